//! Man pages and shell completions generated from the real command line definition, so
//! that they can never drift from `--help`. `mailgate assets --out DIR` (hidden; `make deb`
//! runs it) writes `DIR/man/mailgate.1` plus one page per subcommand (`mailgate-check.1`,
//! `mailgate-ctl-status.1`, ...) and `DIR/completions/` for bash, zsh and fish.

use std::io;
use std::path::{Path, PathBuf};

use clap_complete::Shell;

/// The shells completions are generated for, and the file name each one expects.
const SHELLS: [(Shell, &str); 3] = [
    (Shell::Bash, "mailgate.bash"),
    (Shell::Zsh, "_mailgate"),
    (Shell::Fish, "mailgate.fish"),
];

/// What [`write_all`] wrote.
#[derive(Debug, Default)]
pub struct Written {
    /// Man pages, section 1.
    pub man: Vec<PathBuf>,
    /// Completion scripts.
    pub completions: Vec<PathBuf>,
}

/// Write the man pages and completions of `cmd` under `out` (created if missing).
pub fn write_all(cmd: clap::Command, out: &Path) -> io::Result<Written> {
    let mut cmd = without_hidden(cmd);
    cmd.build();
    let man_dir = out.join("man");
    let comp_dir = out.join("completions");
    std::fs::create_dir_all(&man_dir)?;
    std::fs::create_dir_all(&comp_dir)?;
    let mut written = Written::default();
    write_pages(&cmd, &man_dir, &mut written.man)?;
    for (shell, file) in SHELLS {
        let path = comp_dir.join(file);
        let mut f = std::fs::File::create(&path)?;
        let name = cmd.get_name().to_string();
        clap_complete::generate(shell, &mut cmd.clone(), name, &mut f);
        written.completions.push(path);
    }
    Ok(written)
}

/// `cmd` (not yet built) without its hidden subcommands: clap_complete would offer them.
fn without_hidden(cmd: clap::Command) -> clap::Command {
    if !cmd.get_subcommands().any(|s| s.is_hide_set()) {
        return cmd;
    }
    let mut out = clap::Command::new(cmd.get_name().to_string())
        .args(cmd.get_arguments().cloned())
        .groups(cmd.get_groups().cloned())
        .subcommand_required(cmd.is_subcommand_required_set())
        .arg_required_else_help(cmd.is_arg_required_else_help_set())
        .subcommands(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    if let Some(v) = cmd.get_version() {
        out = out.version(v.to_string());
    }
    if let Some(a) = cmd.get_about() {
        out = out.about(a.clone());
    }
    if let Some(a) = cmd.get_long_about() {
        out = out.long_about(a.clone());
    }
    out
}

/// `cmd`'s page and, recursively, one per visible subcommand (`mailgate-ctl-drain.1`).
fn write_pages(cmd: &clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> io::Result<()> {
    let path = dir.join(format!("{}.1", cmd.get_name()));
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut buf)?;
    std::fs::write(&path, buf)?;
    written.push(path);
    for sub in cmd.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        let name = format!("{}-{}", cmd.get_name(), sub.get_name());
        // Subcommands inherit the version, so that every page's footer names it.
        let mut page = sub.clone().name(name);
        if let Some(v) = cmd.get_version() {
            page = page.version(v.to_string());
        }
        write_pages(&page, dir, written)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli() -> clap::Command {
        clap::Command::new("mailgate")
            .version("1.2.3")
            .about("test")
            .subcommand(clap::Command::new("check").about("Validate"))
            .subcommand(
                clap::Command::new("ctl")
                    .about("Admin")
                    .subcommand(clap::Command::new("status").about("Status")),
            )
            .subcommand(clap::Command::new("assets").hide(true))
    }

    #[test]
    fn writes_a_page_per_visible_subcommand_and_three_completions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let w = write_all(cli(), dir.path()).expect("write");
        let mut names: Vec<String> = w
            .man
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "mailgate-check.1",
                "mailgate-ctl-status.1",
                "mailgate-ctl.1",
                "mailgate.1"
            ]
        );
        let page = std::fs::read_to_string(dir.path().join("man/mailgate-ctl-status.1"))
            .expect("read page");
        assert!(page.contains(".TH mailgate-ctl-status 1"), "{page}");
        assert!(page.contains("1.2.3"), "{page}");
        let bash = std::fs::read_to_string(dir.path().join("completions/mailgate.bash"))
            .expect("read bash");
        assert!(bash.contains("complete -F _mailgate"), "{bash}");
        for file in ["_mailgate", "mailgate.fish"] {
            let text = std::fs::read_to_string(dir.path().join("completions").join(file))
                .expect("read completion");
            assert!(text.contains("check"), "{text}");
            assert!(
                !text.contains("assets"),
                "hidden subcommand completed: {text}"
            );
        }
        let top = std::fs::read_to_string(dir.path().join("man/mailgate.1")).expect("read");
        assert!(!top.contains("assets"), "{top}");
        assert!(
            !bash.contains("assets"),
            "hidden subcommand completed: {bash}"
        );
        assert_eq!(w.completions.len(), 3);
    }
}
