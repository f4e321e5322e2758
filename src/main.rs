//! The `slipway` binary: parse, route, print the error chain once.

use clap::Parser;

fn main() {
    // libostree runs slipway as its boot menu generator (`-o /boot/loader.N/grub.cfg`).
    if let Some(code) = slipway::sysroot::bootloader::generator_hook() {
        std::process::exit(code);
    }
    slipway::sysroot::bootloader::set_generator_env();
    let cli = slipway::cli::Cli::parse();
    slipway::sys::ui::set_quiet(cli.quiet);
    if let Err(e) = slipway::cli::run(cli) {
        if let Some(slipway::cli::ExitCode(code)) = e.downcast_ref() {
            std::process::exit(*code);
        }
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
