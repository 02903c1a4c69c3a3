//! `ocusers`: parse the command line, set up logging, run the library, map
//! the outcome to an exit status (0 ok, 1 failure, 2 usage).
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = ocusers::cli::Cli::parse();
    ocusers::logging::init(cli.verbose);
    match ocusers::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ocusers: {}", ocusers::error::render_chain(&err));
            ExitCode::from(ocusers::error::exit_code(&err))
        }
    }
}
