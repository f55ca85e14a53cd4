//! Shell integration generated from the one definition of the flags (`cli::Cli`), so help, the
//! completions and the man page cannot drift apart: `retryx completions bash|zsh|fish`
//! (clap_complete) and `retryx man` (a roff page, clap_mangen). Writes only to the writer given.

use std::io::Write;

use clap::CommandFactory;

/// The shells `retryx completions` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// The completion script for `shell`.
pub fn completions(shell: Shell, out: &mut dyn Write) {
    let kind = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(kind, &mut crate::front::cli::Cli::command(), "retryx", out);
}

/// The man page, section 1, in roff.
pub fn man(out: &mut dyn Write) -> std::io::Result<()> {
    let cmd = crate::front::cli::Cli::command();
    clap_mangen::Man::new(cmd).render(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shell_gets_a_script_naming_the_subcommands() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut out = Vec::new();
            completions(shell, &mut out);
            let text = String::from_utf8(out).unwrap();
            assert!(text.contains("retryx"), "{shell:?}");
            assert!(text.contains("session"), "{shell:?}");
            assert!(text.contains("max-attempts"), "{shell:?}");
        }
    }

    #[test]
    fn the_man_page_is_roff_with_the_flags() {
        let mut out = Vec::new();
        man(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with(".ie") || text.contains(".TH retryx"),
            "{text:.200}"
        );
        assert!(text.contains("max\\-attempts"));
    }
}
