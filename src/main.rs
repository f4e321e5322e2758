//! The `slipway` binary: parse, route, print the error chain once.

use clap::Parser;

fn main() {
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
