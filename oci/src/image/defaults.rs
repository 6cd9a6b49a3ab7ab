//! What an image's configuration says its container runs by default: environment, entrypoint,
//! command, working directory and user (the `config` object of an OCI image configuration and of
//! a docker image's config JSON, which share these names). Kept beside the unpacked image as
//! `defaults.json`.
//!
//! An image is as untrusted as the job naming it: counts and sizes are bounded, and a user
//! name is looked up only in the image's own `/etc/passwd` and `/etc/group`.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Most environment entries, entrypoint and command words an image may set together.
pub const MAX_ENTRIES: usize = 1024;
/// Most bytes of all of them together.
pub const MAX_BYTES: usize = 128 * 1024;

/// An image's defaults for the process its container runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageDefaults {
    /// `KEY=value` entries.
    #[serde(default)]
    pub env: Vec<String>,
    /// The program and its first arguments.
    #[serde(default)]
    pub entrypoint: Vec<String>,
    /// The default arguments (the program, without an entrypoint).
    #[serde(default)]
    pub cmd: Vec<String>,
    /// The working directory (empty: `/`).
    #[serde(default)]
    pub workdir: String,
    /// `user`, `uid`, `user:group` or `uid:gid` (empty: root).
    #[serde(default)]
    pub user: String,
}

/// The image configuration's `config` object, as both formats spell it.
#[derive(Deserialize, Default)]
struct RawConfig {
    #[serde(rename = "Env", default)]
    env: Option<Vec<String>>,
    #[serde(rename = "Entrypoint", default)]
    entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default)]
    cmd: Option<Vec<String>>,
    #[serde(rename = "WorkingDir", default)]
    workdir: Option<String>,
    #[serde(rename = "User", default)]
    user: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawImage {
    #[serde(default)]
    config: Option<RawConfig>,
}

impl ImageDefaults {
    /// Reads the defaults from an image configuration blob; an image without a `config` object
    /// has none. Over [`MAX_ENTRIES`] or [`MAX_BYTES`], or a NUL byte, is an error.
    pub(crate) fn from_config_json(bytes: &[u8]) -> Result<Self, String> {
        let raw: RawImage =
            serde_json::from_slice(bytes).map_err(|e| format!("image configuration: {e}"))?;
        let c = raw.config.unwrap_or_default();
        let d = Self {
            env: c.env.unwrap_or_default(),
            entrypoint: c.entrypoint.unwrap_or_default(),
            cmd: c.cmd.unwrap_or_default(),
            workdir: c.workdir.unwrap_or_default(),
            user: c.user.unwrap_or_default(),
        };
        d.check()?;
        Ok(d)
    }

    fn check(&self) -> Result<(), String> {
        let words = || {
            self.env
                .iter()
                .chain(&self.entrypoint)
                .chain(&self.cmd)
                .chain([&self.workdir, &self.user])
        };
        let count = self.env.len() + self.entrypoint.len() + self.cmd.len();
        if count > MAX_ENTRIES {
            return Err(format!(
                "the image configuration sets {count} environment entries and command words; at most {MAX_ENTRIES}"
            ));
        }
        let bytes: usize = words().map(String::len).sum();
        if bytes > MAX_BYTES {
            return Err(format!(
                "the image configuration's environment and command hold {bytes} bytes; at most {MAX_BYTES}"
            ));
        }
        if words().any(|w| w.contains('\0')) {
            return Err("the image configuration holds a NUL byte".into());
        }
        Ok(())
    }

    /// Reads `defaults.json` of a stored image; a missing file (an image stored before defaults
    /// were kept) or an unreadable one is no defaults.
    pub(crate) fn load(path: &Path) -> Self {
        std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Self>(&b).ok())
            .filter(|d| d.check().is_ok())
            .unwrap_or_default()
    }

    /// The process to run when the job names `command` (empty: none) and `args`: the job's
    /// command with its arguments; else the entrypoint followed by the job's arguments, or by the
    /// image's command when the job gives none. Empty when neither names a program.
    pub fn argv(&self, command: &str, args: &[String]) -> Vec<String> {
        if !command.is_empty() {
            return std::iter::once(command.to_string())
                .chain(args.iter().cloned())
                .collect();
        }
        let tail = if args.is_empty() { &self.cmd } else { args };
        self.entrypoint.iter().chain(tail).cloned().collect()
    }

    /// The image's `User` as numeric ids, names looked up in `rootfs`'s `/etc/passwd` and
    /// `/etc/group`; `None` when the image sets none.
    pub fn user_ids(&self, rootfs: &Path) -> Result<Option<(u32, u32)>, String> {
        let spec = self.user.trim();
        if spec.is_empty() {
            return Ok(None);
        }
        let (user, group) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        let passwd = read_small(&rootfs.join("etc/passwd"));
        let (uid, primary) = match user.parse::<u32>() {
            Ok(uid) => (uid, lookup(&passwd, |f| f[2] == user, 3).unwrap_or(0)),
            Err(_) => {
                let uid = lookup(&passwd, |f| f[0] == user, 2).ok_or_else(|| {
                    format!("the image runs as user `{user}`, which its /etc/passwd does not list; give the job a numeric user")
                })?;
                (uid, lookup(&passwd, |f| f[0] == user, 3).unwrap_or(0))
            }
        };
        let gid = match group {
            None => primary,
            Some(g) => match g.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => lookup(&read_small(&rootfs.join("etc/group")), |f| f[0] == g, 2)
                    .ok_or_else(|| {
                        format!("the image runs as group `{g}`, which its /etc/group does not list; give the job a numeric user")
                    })?,
            },
        };
        Ok(Some((uid, gid)))
    }
}

/// A small text file of the image (at most 1 MiB read; it is the image's, not the host's).
fn read_small(path: &Path) -> String {
    use std::io::Read;
    let Ok(f) = std::fs::File::open(path) else {
        return String::new();
    };
    let mut text = String::new();
    let _ = f.take(1 << 20).read_to_string(&mut text);
    text
}

/// Field `want` of the first `name:x:...` line `matches` accepts, as a number.
fn lookup(text: &str, matches: impl Fn(&[&str]) -> bool, want: usize) -> Option<u32> {
    text.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() > want.max(2))
        .find(|f| matches(f))
        .and_then(|f| f[want].parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_formats_config_objects_are_read_and_missing_parts_are_empty() {
        let d = ImageDefaults::from_config_json(
            br#"{"architecture":"amd64","config":{"Env":["PATH=/bin","A=1"],"Entrypoint":["/bin/sh","-c"],"Cmd":["echo hi"],"WorkingDir":"/srv","User":"1000:1000"},"rootfs":{"type":"layers","diff_ids":[]}}"#,
        )
        .unwrap();
        assert_eq!(d.env, ["PATH=/bin", "A=1"]);
        assert_eq!(d.argv("", &[]), ["/bin/sh", "-c", "echo hi"]);
        assert_eq!(d.workdir, "/srv");
        let none = ImageDefaults::from_config_json(br#"{"config":{"Cmd":null}}"#).unwrap();
        assert_eq!(none, ImageDefaults::default());
        assert_eq!(
            ImageDefaults::from_config_json(b"{}").unwrap(),
            ImageDefaults::default()
        );
    }

    #[test]
    fn the_jobs_command_wins_and_its_arguments_replace_the_images_command() {
        let d = ImageDefaults {
            entrypoint: vec!["/entry".into()],
            cmd: vec!["default".into()],
            ..Default::default()
        };
        assert_eq!(d.argv("", &[]), ["/entry", "default"]);
        assert_eq!(d.argv("", &["mine".into()]), ["/entry", "mine"]);
        assert_eq!(d.argv("/bin/true", &["x".into()]), ["/bin/true", "x"]);
        assert!(ImageDefaults::default().argv("", &[]).is_empty());
    }

    #[test]
    fn hostile_configurations_are_bounded() {
        let many: Vec<String> = (0..2000).map(|i| format!("\"K{i}=v\"")).collect();
        let json = format!(r#"{{"config":{{"Env":[{}]}}}}"#, many.join(","));
        let e = ImageDefaults::from_config_json(json.as_bytes()).unwrap_err();
        assert!(e.contains("at most 1024"), "{e}");
        let big = "x".repeat(MAX_BYTES + 1);
        let json = format!(r#"{{"config":{{"Cmd":["{big}"]}}}}"#);
        let e = ImageDefaults::from_config_json(json.as_bytes()).unwrap_err();
        assert!(e.contains("bytes"), "{e}");
        let e = ImageDefaults::from_config_json(br#"{"config":{"Cmd":["a\u0000b"]}}"#).unwrap_err();
        assert!(e.contains("NUL"), "{e}");
        assert!(ImageDefaults::from_config_json(b"[1,2]").is_err());
    }

    #[test]
    fn user_names_are_looked_up_in_the_images_own_files() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("etc")).unwrap();
        std::fs::write(
            root.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1001:1002::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(root.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        let user = |u: &str| ImageDefaults {
            user: u.into(),
            ..Default::default()
        };
        assert_eq!(user("").user_ids(root.path()).unwrap(), None);
        assert_eq!(
            user("app").user_ids(root.path()).unwrap(),
            Some((1001, 1002))
        );
        assert_eq!(
            user("app:staff").user_ids(root.path()).unwrap(),
            Some((1001, 50))
        );
        assert_eq!(
            user("1001").user_ids(root.path()).unwrap(),
            Some((1001, 1002))
        );
        assert_eq!(user("7:8").user_ids(root.path()).unwrap(), Some((7, 8)));
        let e = user("nobody").user_ids(root.path()).unwrap_err();
        assert!(e.contains("`nobody`") && e.contains("numeric"), "{e}");
        let e = user("app:wheel").user_ids(root.path()).unwrap_err();
        assert!(e.contains("`wheel`"), "{e}");
    }
}
