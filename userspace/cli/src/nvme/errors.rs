//! `dmremap nvme errors`: the error information log.

use serde::Serialize;

use dmremap_core::nvme::error_log::{ErrorLog, ErrorLogEntry, ERROR_ENTRY_LEN};
use dmremap_core::nvme::identify::IDENTIFY_LEN;
use dmremap_lib::nvme::admin::{identify_controller, read_error_log, IoctlTransport};

use super::{dev_dir, device_error, print_json, resolve};
use crate::error::{CliError, Kind};

/// One entry in nvme-cli's `error-log -o json` layout (`status_field` without the phase tag,
/// which is its own key).
#[derive(Serialize)]
struct ErrorJson {
    error_count: u64,
    sqid: u16,
    cmdid: u16,
    status_field: u16,
    phase_tag: u8,
    parm_error_location: u16,
    lba: u64,
    nsid: u32,
    vs: u8,
    trtype: u8,
    cs: u64,
    trtype_spec_info: u16,
}

impl From<&ErrorLogEntry> for ErrorJson {
    fn from(e: &ErrorLogEntry) -> Self {
        ErrorJson {
            error_count: e.error_count,
            sqid: e.sqid,
            cmdid: e.cmdid,
            status_field: e.status(),
            phase_tag: e.phase_tag(),
            parm_error_location: e.parm_error_location,
            lba: e.lba,
            nsid: e.nsid,
            vs: e.vs,
            trtype: e.trtype,
            cs: e.cs,
            trtype_spec_info: e.trtype_spec_info,
        }
    }
}

#[derive(Serialize)]
struct ErrorsJson {
    errors: Vec<ErrorJson>,
}

fn errors_text(name: &str, entries: &[ErrorLogEntry]) -> String {
    use std::fmt::Write;
    let used = entries.iter().filter(|e| !e.is_empty()).count();
    let mut o = format!(
        "Error Log Entries for device:{name} entries:{} (in use: {used})\n",
        entries.len()
    );
    for (i, e) in entries.iter().enumerate().filter(|(_, e)| !e.is_empty()) {
        let _ = writeln!(o, " Entry[{i:2}]");
        let _ = writeln!(o, "{:<22}: {}", "error_count", e.error_count);
        let _ = writeln!(o, "{:<22}: {}", "sqid", e.sqid);
        let _ = writeln!(o, "{:<22}: {:#x}", "cmdid", e.cmdid);
        let _ = writeln!(
            o,
            "{:<22}: {:#x} ({}, sct {:#x} sc {:#x}{})",
            "status_field",
            e.status(),
            dmremap_core::nvme::status_name(e.status()),
            e.status_code_type(),
            e.status_code(),
            if e.dnr() { ", dnr" } else { "" }
        );
        let _ = writeln!(o, "{:<22}: {:#x}", "phase_tag", e.phase_tag());
        let _ = writeln!(o, "{:<22}: {:#x}", "parm_err_loc", e.parm_error_location);
        let _ = writeln!(o, "{:<22}: {:#x}", "lba", e.lba);
        let _ = writeln!(o, "{:<22}: {:#x}", "nsid", e.nsid);
        let _ = writeln!(o, "{:<22}: {}", "vs", e.vs);
        let _ = writeln!(o, "{:<22}: {}", "trtype", e.trtype);
        let _ = writeln!(o, "{:<22}: {:#x}", "csi", e.csi);
        let _ = writeln!(o, "{:<22}: {:#x}", "opcode", e.opcode);
        let _ = writeln!(o, "{:<22}: {:#x}", "cs", e.cs);
        let _ = writeln!(o, "{:<22}: {:#x}", "trtype_spec_info", e.trtype_spec_info);
    }
    o
}

/// Entries to read: the request (default 64) capped at what the controller keeps.
fn error_entries(requested: Option<u16>, keep: u16) -> Result<usize, CliError> {
    let want = requested.unwrap_or(64);
    if want == 0 {
        return Err(CliError::new(Kind::Usage, "--entries must be at least 1"));
    }
    Ok(usize::from(want.min(keep)))
}

pub(super) fn cmd_errors(dev: &str, entries: Option<u16>, json: bool) -> Result<(), CliError> {
    let name = resolve(dev)?;
    let mut t = IoctlTransport::new(dev_dir());
    let mut idbuf = vec![0u8; IDENTIFY_LEN];
    let id = identify_controller(&mut t, &name, &mut idbuf).map_err(device_error)?;
    let n = error_entries(entries, id.error_log_entries())?;
    let mut buf = vec![0u8; n * ERROR_ENTRY_LEN];
    let len = read_error_log(&mut t, &name, n, &mut buf).map_err(device_error)?;
    let log = ErrorLog::new(&buf[..len])
        .map_err(|e| CliError::failed(format!("{name}: get log page 0x01: {e}")))?;
    let all: Vec<ErrorLogEntry> = log.entries().collect();
    if json {
        print_json(&ErrorsJson {
            errors: all.iter().map(ErrorJson::from).collect(),
        })
    } else {
        print!("{}", errors_text(&name, &all));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nvme::keys;

    #[test]
    fn error_json_matches_nvme_cli_keys_and_status_split() {
        let e = ErrorLogEntry {
            error_count: 5,
            sqid: 1,
            cmdid: 0x22,
            status_field: (0x4281 << 1) | 1,
            parm_error_location: 0xffff,
            lba: 4096,
            nsid: 1,
            vs: 0,
            trtype: 0,
            csi: 0,
            opcode: 2,
            cs: 7,
            trtype_spec_info: 0,
            log_page_version: 1,
        };
        let v = serde_json::to_value(ErrorsJson {
            errors: vec![ErrorJson::from(&e)],
        })
        .unwrap();
        assert_eq!(keys(&v), ["errors"]);
        let x = &v["errors"][0];
        assert_eq!(
            keys(x),
            [
                "error_count",
                "sqid",
                "cmdid",
                "status_field",
                "phase_tag",
                "parm_error_location",
                "lba",
                "nsid",
                "vs",
                "trtype",
                "cs",
                "trtype_spec_info",
            ]
        );
        assert_eq!(x["status_field"], 0x4281);
        assert_eq!(x["phase_tag"], 1);
        assert_eq!(x["cs"], 7);
        let t = errors_text("nvme0", &[e, ErrorLogEntry::default()]);
        assert!(t.contains("entries:2 (in use: 1)"));
        assert!(t.contains("Unrecovered Read Error"), "{t}");
        assert!(t.contains(", dnr"));
    }

    #[test]
    fn error_entry_count_is_capped() {
        assert_eq!(error_entries(None, 256).unwrap(), 64);
        assert_eq!(error_entries(None, 4).unwrap(), 4);
        assert_eq!(error_entries(Some(300), 256).unwrap(), 256);
        assert_eq!(error_entries(Some(2), 256).unwrap(), 2);
        assert_eq!(error_entries(Some(0), 256).unwrap_err().kind, Kind::Usage);
    }
}
