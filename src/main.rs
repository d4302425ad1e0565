//! The `wsi-thumbnail` command: see `wsi-thumbnail --help` and the README.

mod cli;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

fn main() -> ExitCode {
    // `--version` names the slide libraries too (contract §2), which only run time knows.
    let long_version: &'static str =
        Box::leak(wsi_thumbnail::slide::libraries::version_text().into_boxed_str());
    let matches = cli::Cli::command().long_version(long_version).get_matches();
    let args = match cli::Cli::from_arg_matches(&matches) {
        Ok(args) => args,
        Err(e) => e.exit(),
    };
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            // One line, as scripts and operators expect.
            eprintln!("error: {}", e.to_string().replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
