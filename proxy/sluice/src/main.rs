//! `sluice`: wiring only; see `cli`.

/// mimalloc instead of the system allocator: per-request allocations were about 7% of the
/// server's CPU in the 4 KiB GET profile with glibc's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    sluice::cli::main()
}
