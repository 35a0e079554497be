//! `dmremap completions <shell>` and `dmremap manpage`: shell completion scripts and manual pages
//! generated at run time from the same clap definitions that parse the command line, so they
//! always match the binary that prints them.

use std::fs;
use std::io;
use std::path::Path;

use clap::Command;
use clap_complete::Shell;

use crate::error::CliError;

/// Writes the completion script for `shell` to standard output.
pub fn completions(mut cmd: Command, shell: Shell) -> Result<(), CliError> {
    let name = cmd.get_name().to_string();
    clap_complete::generate(shell, &mut cmd, name, &mut io::stdout());
    Ok(())
}

/// Writes the top-level manual page (section 1) to standard output, or with `dir`, one page per
/// command (`dmremap.1`, `dmremap-create.1`, `dmremap-nvme-smart.1`, ...) into that directory.
pub fn manpage(cmd: Command, dir: Option<&Path>) -> Result<(), CliError> {
    match dir {
        None => clap_mangen::Man::new(cmd)
            .render(&mut io::stdout())
            .map_err(|e| CliError::failed(format!("manual page: {e}"))),
        Some(d) => {
            fs::create_dir_all(d).map_err(|e| CliError::failed(format!("{}: {e}", d.display())))?;
            clap_mangen::generate_to(cmd, d)
                .map_err(|e| CliError::failed(format!("{}: {e}", d.display())))
        }
    }
}
