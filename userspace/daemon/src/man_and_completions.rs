//! `dmremapd completions <shell>` and `dmremapd manpage`: generated at run time from the clap
//! definitions that parse the command line (section 8: a system daemon).

use std::io;
use std::path::Path;
use std::process::ExitCode;

use clap::Command;
use clap_complete::Shell;

/// Writes the completion script for `shell` to standard output.
pub fn completions(mut cmd: Command, shell: Shell) -> ExitCode {
    let name = cmd.get_name().to_string();
    clap_complete::generate(shell, &mut cmd, name, &mut io::stdout());
    ExitCode::SUCCESS
}

/// Writes the manual page to standard output, or with `dir` one page per command
/// (`dmremapd.8`, `dmremapd-scrub.8`, ...) into that directory.
pub fn manpage(cmd: Command, dir: Option<&Path>) -> ExitCode {
    let cmd = cmd.version(env!("CARGO_PKG_VERSION"));
    let res = match dir {
        None => clap_mangen::Man::new(cmd)
            .section("8")
            .render(&mut io::stdout()),
        Some(d) => std::fs::create_dir_all(d).and_then(|_| write_pages(&cmd, d)),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dmremapd: manual page: {e}");
            ExitCode::from(1)
        }
    }
}

fn write_pages(cmd: &Command, dir: &Path) -> io::Result<()> {
    let mut cmd = cmd.clone();
    cmd.build();
    write_page(&cmd, dir, cmd.get_name())
}

fn write_page(cmd: &Command, dir: &Path, name: &str) -> io::Result<()> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .title(name)
        .section("8")
        .render(&mut buf)?;
    std::fs::write(dir.join(format!("{name}.8")), buf)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.get_name() == "help" {
            continue;
        }
        write_page(sub, dir, &format!("{name}-{}", sub.get_name()))?;
    }
    Ok(())
}
