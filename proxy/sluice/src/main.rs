//! `sluice`: wiring only; see `cli`.

/// jemalloc rather than glibc's malloc: a request makes many small, short-lived allocations
/// across threads (headers, body pieces, futures). Measured on the upstream 4 KiB GET: about
/// 10% less CPU per request, large downloads unchanged (mimalloc, also tried, slowed them by
/// a third: TLS record buffers landed where copying into them was slow).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    sluice::cli::main()
}
