//! The `slipway` binary: parse, route, print the error chain once.

use clap::Parser;

fn main() {
    // libostree runs slipway as its boot menu generator (`-o /boot/loader.N/grub.cfg`).
    if let Some(code) = slipway::sysroot::bootloader::generator_hook() {
        std::process::exit(code);
    }
    slipway::sysroot::bootloader::set_generator_env();
    let cli = match slipway::cli::Cli::try_parse() {
        Ok(cli) => cli,
        // --help, --version and usage errors: clap's text, and its status unless the text
        // could not be written.
        Err(e) => {
            let code = e.exit_code();
            if let Err(w) = e.print() {
                fail(slipway::sys::ui::stdout_error(w));
            }
            std::process::exit(code);
        }
    };
    slipway::sys::ui::set_quiet(cli.quiet);
    if let Err(e) = slipway::cli::run(cli) {
        fail(e);
    }
}

/// End with the error's status: a command's own exit code, quietly on a closed stdout, else
/// the error chain on stderr and 1.
fn fail(e: anyhow::Error) -> ! {
    if let Some(slipway::cli::ExitCode(code)) = e.downcast_ref() {
        std::process::exit(*code);
    }
    if e.chain().any(|c| c.is::<slipway::sys::ui::StdoutClosed>()) {
        std::process::exit(slipway::sys::ui::STDOUT_CLOSED_EXIT);
    }
    eprintln!("error: {e:#}");
    std::process::exit(1);
}
