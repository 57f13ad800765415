//! `switchyard-enter`: the trampoline a plugin host starts each worker through; see
//! `switchyard_host::confine::enter`.

fn main() {
    let why = switchyard_host::confine::enter(std::env::args_os().skip(1));
    eprintln!("switchyard-enter: {why}");
    std::process::exit(switchyard_host::confine::ENTER_FAILED);
}
