fn main() -> std::process::ExitCode {
    flowtop::run()
}
