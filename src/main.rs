fn main() {
    std::process::exit(sipshard::cli::main());
}
