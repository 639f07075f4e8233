fn main() {
    eprintln!("github-emulator: not implemented yet");
    std::process::exit(1);
}
