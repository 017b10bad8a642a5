//! `sluice`: wiring only; see `cli`.

fn main() -> std::process::ExitCode {
    sluice::cli::main()
}
