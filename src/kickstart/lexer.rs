//! Reading kickstart text: lines split shell-style into words, `%pre`/`%post` sections
//! collected verbatim up to `%end`, `%include`/`%ksappend` spliced in (relative to the including
//! file, cycles refused), unsupported sections refused. Every command line is handed to the
//! command parsers in `commands`; every message starts with a [`Location`].

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};
use serde::Serialize;

use super::options::{Args, Opt, Takes, alias, flag, value};
use super::{DEFAULT_INTERPRETER, Parser, Script};

/// Section keywords: inside a `%pre`/`%post` body one of these (instead of `%end`) means the
/// section was not closed.
const SECTION_KEYWORDS: &[&str] = &[
    "%pre",
    "%pre-install",
    "%post",
    "%packages",
    "%addon",
    "%anaconda",
    "%onerror",
    "%traceback",
];

/// Where something was written: file (or the name given to [`parse_str`](super::parse_str))
/// and 1-based line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Location {
    pub source: String,
    pub line: usize,
}

impl Location {
    pub fn new(source: &str, line: usize) -> Self {
        Location {
            source: source.to_string(),
            line,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.source, self.line)
    }
}

impl Parser {
    pub(super) fn parse_path(&mut self, path: &Path, from: Option<&Location>) -> Result<()> {
        let name = path.display().to_string();
        let what = |err: std::io::Error| match from {
            Some(loc) => anyhow!("{loc}: cannot include `{name}`: {err}"),
            None => anyhow!("cannot read kickstart `{name}`: {err}"),
        };
        let canonical = fs::canonicalize(path).map_err(what)?;
        if let Some(pos) = self.stack.iter().position(|(p, _)| *p == canonical) {
            let mut chain: Vec<&str> = self.stack[pos..].iter().map(|(_, n)| n.as_str()).collect();
            chain.push(&name);
            let loc = from.map(ToString::to_string).unwrap_or_default();
            bail!("{loc}: %include cycle: {}", chain.join(" -> "));
        }
        let text = fs::read_to_string(path).map_err(what)?;
        let base = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        self.stack.push((canonical, name.clone()));
        let result = self.parse_text(&text, &name, &base);
        self.stack.pop();
        result
    }

    pub(super) fn parse_text(&mut self, text: &str, source: &str, base: &Path) -> Result<()> {
        let lines: Vec<&str> = text.lines().collect();
        let mut idx = 0;
        while idx < lines.len() {
            let loc = Location::new(source, idx + 1);
            let tokens = tokenize(lines[idx], &loc)?;
            idx += 1;
            let Some(first) = tokens.first() else {
                continue;
            };
            match first.as_str() {
                "%include" | "%ksappend" => self.include(&loc, &tokens, base)?,
                "%pre" | "%post" => idx = self.script(&loc, &tokens, &lines, idx)?,
                "%packages" => bail!(
                    "{loc}: %packages is not supported: software comes from the OSTree commit (ostreesetup)"
                ),
                "%addon" | "%anaconda" | "%onerror" | "%traceback" | "%pre-install" => {
                    bail!("{loc}: {first} sections are not supported by slipway")
                }
                "%end" => bail!("{loc}: %end without an open section"),
                section if section.starts_with('%') => {
                    bail!("{loc}: unknown kickstart section `{section}`")
                }
                _ => self.command(&loc, &tokens)?,
            }
        }
        Ok(())
    }

    fn include(&mut self, loc: &Location, tokens: &[String], base: &Path) -> Result<()> {
        let keyword = &tokens[0];
        let [_, target] = tokens else {
            bail!("{loc}: {keyword} takes exactly one argument, the file to include");
        };
        if target.contains("://") {
            bail!("{loc}: {keyword} `{target}`: only local files can be included");
        }
        let path = base.join(target);
        self.parse_path(&path, Some(loc))
    }

    /// Read a `%pre`/`%post` section whose header is at `loc`; `idx` is the index of the line
    /// after the header. Returns the index of the line after `%end`.
    fn script(
        &mut self,
        loc: &Location,
        tokens: &[String],
        lines: &[&str],
        mut idx: usize,
    ) -> Result<usize> {
        let kind = tokens[0].as_str();
        let post = kind == "%post";
        const PRE: &[Opt] = &[
            value("--interpreter"),
            flag("--erroronfail"),
            value("--log"),
            alias("--logfile", "--log", Takes::Value),
        ];
        const POST: &[Opt] = &[
            value("--interpreter"),
            flag("--erroronfail"),
            value("--log"),
            alias("--logfile", "--log", Takes::Value),
            flag("--nochroot"),
        ];
        let args = Args::parse(loc, kind, &tokens[1..], if post { POST } else { PRE })?;
        args.no_positional()?;
        let interpreter = match args.text("--interpreter")? {
            Some(path) if !path.starts_with('/') => {
                bail!("{loc}: {kind} --interpreter: `{path}` is not an absolute path")
            }
            Some(path) => path.to_string(),
            None => DEFAULT_INTERPRETER.to_string(),
        };
        let mut body = String::new();
        loop {
            let Some(line) = lines.get(idx) else {
                bail!("{loc}: {kind} section has no matching %end");
            };
            idx += 1;
            match line.split_whitespace().next() {
                Some("%end") => break,
                Some(word) if SECTION_KEYWORDS.contains(&word) => bail!(
                    "{loc}: {kind} section has no matching %end (line {idx} starts a new section `{word}`)"
                ),
                _ => {
                    body.push_str(line);
                    body.push('\n');
                }
            }
        }
        let log = args.text("--log")?;
        if let Some(log) = log {
            // A path inside the tree the script runs in: no `..`, not the root itself.
            crate::sys::tree::check_path(&format!("{loc}: {kind} --log"), log)?;
        }
        let script = Script {
            interpreter,
            erroronfail: args.flag("--erroronfail"),
            nochroot: args.flag("--nochroot"),
            log: log.map(str::to_string),
            body,
            at: loc.clone(),
        };
        if post {
            self.ks.post.push(script);
        } else {
            self.ks.pre.push(script);
        }
        Ok(idx)
    }
}

/// Split one line shell-style; a word starting with `#` comments out the rest of the line.
fn tokenize(line: &str, loc: &Location) -> Result<Vec<String>> {
    let mut lexer = shlex::Shlex::new(line);
    let tokens: Vec<String> = lexer.by_ref().collect();
    if lexer.had_error {
        bail!("{loc}: unbalanced quotes or trailing backslash");
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;

    use crate::kickstart::test_util::*;
    use crate::kickstart::*;

    #[test]
    fn section_and_include_errors_name_the_offending_line() {
        let cases: &[(&str, usize, &str)] = &[
            (
                "%packages\nvim\n%end\n",
                1,
                "%packages is not supported: software comes from the OSTree commit (ostreesetup)",
            ),
            (
                "text\n%addon com_redhat_kdump\n%end\n",
                2,
                "%addon sections are not supported",
            ),
            ("%onerror\n%end\n", 1, "%onerror sections are not supported"),
            (
                "\n%frobnicate\n%end\n",
                2,
                "unknown kickstart section `%frobnicate`",
            ),
            (
                "text\n%post\necho hi\n",
                2,
                "%post section has no matching %end",
            ),
            (
                "%pre\necho\n%post\necho\n%end\n",
                1,
                "line 3 starts a new section `%post`",
            ),
            ("text\n%end\n", 2, "%end without an open section"),
            (
                "%pre --nochroot\n%end\n",
                1,
                "unknown option `--nochroot` for `%pre`",
            ),
            (
                "%post --interpreter python3\n%end\n",
                1,
                "`python3` is not an absolute path",
            ),
            ("%post stuff\n%end\n", 1, "%post takes no arguments"),
            (
                "text\n%post --log=/var/log/../../etc/shadow\n%end\n",
                2,
                "%post --log: `/var/log/../../etc/shadow` contains `..`",
            ),
            ("%pre --log=/\n%end\n", 1, "%pre --log: `/` names the root"),
            ("user --name=\"core\n", 1, "unbalanced quotes"),
            ("%include\n", 1, "%include takes exactly one argument"),
            ("%include http://example.com/x.ks\n", 1, "only local files"),
        ];
        for (text, line, needle) in cases {
            assert_error_at(text, *line, needle);
        }
    }

    #[test]
    fn scripts_keep_options_and_verbatim_bodies() {
        let text = "text\n\
                    %pre --log=/tmp/pre.log\n\
                    echo pre\n\
                    %end\n\
                    %post --interpreter=/usr/bin/python3\n\
                    import os\n\
                    print(\"it's unbalanced: '\")\n\
                    %end\n\
                    %post --interpreter /bin/bash --nochroot --logfile /mnt/sysimage/root/post.log\n\
                    \n\
                    # a comment, kept\n\
                    \x20 # indented comment\n\
                    %notasection and %include foo.ks\n\
                    %endless is not the end\n\
                    \tcat <<'EOF'  # trailing\n\
                    EOF\n\
                    \x20 %end   # closing, indented\n\
                    rootpw --lock\n";
        let ks = parse(text);
        assert_eq!(ks.pre.len(), 1);
        assert_eq!(ks.pre[0].log.as_deref(), Some("/tmp/pre.log"));
        assert_eq!(ks.pre[0].body, "echo pre\n");
        assert_eq!(ks.pre[0].at, Location::new("test.ks", 2));

        assert_eq!(ks.post.len(), 2);
        let py = &ks.post[0];
        assert_eq!(py.interpreter, "/usr/bin/python3");
        assert!(!py.erroronfail && !py.nochroot && py.log.is_none());
        assert_eq!(py.body, "import os\nprint(\"it's unbalanced: '\")\n");
        assert_eq!(py.at.line, 5);

        let sh = &ks.post[1];
        assert_eq!(sh.interpreter, "/bin/bash");
        assert!(sh.nochroot);
        assert_eq!(sh.log.as_deref(), Some("/mnt/sysimage/root/post.log"));
        assert_eq!(sh.at.line, 9);
        assert_eq!(
            sh.body,
            "\n\
             # a comment, kept\n\
             \x20 # indented comment\n\
             %notasection and %include foo.ks\n\
             %endless is not the end\n\
             \tcat <<'EOF'  # trailing\n\
             EOF\n"
        );
        // Parsing resumes after %end.
        assert!(ks.rootpw.unwrap().lock);

        let warnings = parse(text).image_warnings().join("\n");
        assert!(
            warnings.contains("test.ks:2: %pre script is not run"),
            "{warnings}"
        );
        assert!(
            warnings.contains("test.ks:9: %post --nochroot"),
            "{warnings}"
        );
        assert!(!warnings.contains("test.ks:5:"), "{warnings}");
    }

    #[test]
    fn empty_script_body() {
        let ks = parse("%post\n%end\n");
        assert_eq!(ks.post[0].body, "");
        assert_eq!(ks.post[0].interpreter, DEFAULT_INTERPRETER);
    }

    #[test]
    fn comments_and_blank_lines() {
        let ks = parse(
            "# leading comment\n\
             \n\
             \t  # indented comment\n\
             rootpw --plaintext pass#word # trailing comment\n\
             lang en_GB.UTF-8 #trailing\r\n\
             keyboard --vckeymap=de-nodeadkeys --xlayouts=de,us\r\n",
        );
        let rootpw = ks.rootpw.unwrap();
        assert_eq!(rootpw.password.as_deref(), Some("pass#word"));
        assert!(!rootpw.iscrypted);
        assert_eq!(ks.lang.as_deref(), Some("en_GB.UTF-8"));
        assert_eq!(ks.keyboard.unwrap().keymap, "de-nodeadkeys");
        assert_eq!(
            parse("keyboard --xlayouts=fr,us\n")
                .keyboard
                .unwrap()
                .keymap,
            "fr"
        );
    }

    #[test]
    fn include_is_relative_to_the_including_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir(root.join("parts")).unwrap();
        fs::write(
            root.join("main.ks"),
            "text\n%include parts/storage.ks\nrootpw --lock\n",
        )
        .unwrap();
        fs::write(
            root.join("parts/storage.ks"),
            "# storage\npart / --grow\n%ksappend net.ks\n",
        )
        .unwrap();
        fs::write(root.join("parts/net.ks"), "network --hostname=included\n").unwrap();

        let ks = parse_file(&root.join("main.ks")).unwrap();
        assert_eq!(ks.parts.len(), 1);
        assert_eq!(
            ks.parts[0].at,
            Location::new(&root.join("parts/storage.ks").display().to_string(), 2)
        );
        assert_eq!(ks.hostname(), Some("included"));
        assert!(
            ks.rootpw.unwrap().lock,
            "parsing continues after the include"
        );

        // parse_str_with_base resolves against the given directory.
        let ks = parse_str_with_base("%include main.ks\n", "<stdin>", root).unwrap();
        assert_eq!(ks.parts.len(), 1);

        // An error inside an included file names that file and line.
        fs::write(root.join("parts/net.ks"), "\n\nnetwork --bootproto=ppp\n").unwrap();
        let err = format!("{:#}", parse_file(&root.join("main.ks")).unwrap_err());
        let net = root.join("parts").join("net.ks");
        assert!(err.starts_with(&format!("{}:3: ", net.display())), "{err}");

        // A missing include names the %include line.
        fs::write(
            root.join("parts/storage.ks"),
            "part / --grow\n\n%include nope.ks\n",
        )
        .unwrap();
        let err = format!("{:#}", parse_file(&root.join("main.ks")).unwrap_err());
        let storage = root.join("parts").join("storage.ks");
        assert!(
            err.starts_with(&format!("{}:3: cannot include", storage.display())),
            "{err}"
        );
    }

    #[test]
    fn include_cycles_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(root.join("a.ks"), "text\n%include b.ks\n").unwrap();
        fs::write(root.join("b.ks"), "lang C\n\n%include ./a.ks\n").unwrap();
        let err = format!("{:#}", parse_file(&root.join("a.ks")).unwrap_err());
        let b = root.join("b.ks").display().to_string();
        assert!(
            err.starts_with(&format!("{b}:3: %include cycle: ")),
            "{err}"
        );
        assert!(err.contains("a.ks -> "), "{err}");

        fs::write(root.join("self.ks"), "%include self.ks\n").unwrap();
        let err = format!("{:#}", parse_file(&root.join("self.ks")).unwrap_err());
        assert!(err.contains(":1: %include cycle"), "{err}");

        // Including the same file twice (not recursively) is fine.
        fs::write(
            root.join("users.ks"),
            "sshkey --username=root \"ssh-ed25519 AAAA\"\n",
        )
        .unwrap();
        fs::write(
            root.join("twice.ks"),
            "%include users.ks\n%include users.ks\n",
        )
        .unwrap();
        assert_eq!(parse_file(&root.join("twice.ks")).unwrap().sshkeys.len(), 2);
    }

    #[test]
    fn missing_top_level_file() {
        let err = format!(
            "{:#}",
            parse_file(Path::new("/nonexistent/x.ks")).unwrap_err()
        );
        assert!(
            err.contains("cannot read kickstart `/nonexistent/x.ks`"),
            "{err}"
        );
    }
}
