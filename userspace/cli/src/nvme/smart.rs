//! `dmremap nvme smart`: the SMART / health log.

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use dmremap_core::nvme::smart::{SmartLog, SMART_LOG_LEN};
use dmremap_lib::nvme::admin::{read_smart, IoctlTransport};

use super::{dev_dir, device_error, print_json, resolve};
use crate::error::CliError;

/// SMART log in nvme-cli's `smart-log -o json` layout: same keys, same order; temperatures in
/// Kelvin; temperature sensors only when non-zero.
struct SmartJson<'a>(&'a SmartLog);

impl Serialize for SmartJson<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let s = self.0;
        let mut m = ser.serialize_map(None)?;
        m.serialize_entry("critical_warning", &s.critical_warning)?;
        m.serialize_entry("temperature", &s.temperature)?;
        m.serialize_entry("avail_spare", &s.avail_spare)?;
        m.serialize_entry("spare_thresh", &s.spare_thresh)?;
        m.serialize_entry("percent_used", &s.percent_used)?;
        m.serialize_entry(
            "endurance_grp_critical_warning_summary",
            &s.endurance_grp_critical_warning_summary,
        )?;
        m.serialize_entry("data_units_read", &s.data_units_read)?;
        m.serialize_entry("data_units_written", &s.data_units_written)?;
        m.serialize_entry("host_read_commands", &s.host_read_commands)?;
        m.serialize_entry("host_write_commands", &s.host_write_commands)?;
        m.serialize_entry("controller_busy_time", &s.controller_busy_time)?;
        m.serialize_entry("power_cycles", &s.power_cycles)?;
        m.serialize_entry("power_on_hours", &s.power_on_hours)?;
        m.serialize_entry("unsafe_shutdowns", &s.unsafe_shutdowns)?;
        m.serialize_entry("media_errors", &s.media_errors)?;
        m.serialize_entry("num_err_log_entries", &s.num_err_log_entries)?;
        m.serialize_entry("warning_temp_time", &s.warning_temp_time)?;
        m.serialize_entry("critical_comp_time", &s.critical_comp_time)?;
        for (n, k) in s.sensors() {
            m.serialize_entry(&format!("temperature_sensor_{n}"), &k)?;
        }
        m.serialize_entry("thm_temp1_trans_count", &s.thm_temp1_trans_count)?;
        m.serialize_entry("thm_temp2_trans_count", &s.thm_temp2_trans_count)?;
        m.serialize_entry("thm_temp1_total_time", &s.thm_temp1_total_time)?;
        m.serialize_entry("thm_temp2_total_time", &s.thm_temp2_total_time)?;
        m.end()
    }
}

fn kelvin(k: u16) -> String {
    format!("{}°C ({} Kelvin)", i32::from(k) - 273, k)
}

fn smart_text(name: &str, s: &SmartLog) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let mut line = |k: &str, v: String| {
        let _ = writeln!(o, "{k:<40}: {v}");
    };
    line("critical_warning", format!("{:#x}", s.critical_warning));
    line("temperature", kelvin(s.temperature));
    line("available_spare", format!("{}%", s.avail_spare));
    line("available_spare_threshold", format!("{}%", s.spare_thresh));
    line("percentage_used", format!("{}%", s.percent_used));
    line(
        "endurance group critical warning summary",
        format!("{:#x}", s.endurance_grp_critical_warning_summary),
    );
    line("data_units_read", s.data_units_read.to_string());
    line("data_units_written", s.data_units_written.to_string());
    line("host_read_commands", s.host_read_commands.to_string());
    line("host_write_commands", s.host_write_commands.to_string());
    line("controller_busy_time", s.controller_busy_time.to_string());
    line("power_cycles", s.power_cycles.to_string());
    line("power_on_hours", s.power_on_hours.to_string());
    line("unsafe_shutdowns", s.unsafe_shutdowns.to_string());
    line("media_errors", s.media_errors.to_string());
    line("num_err_log_entries", s.num_err_log_entries.to_string());
    line("Warning Temperature Time", s.warning_temp_time.to_string());
    line(
        "Critical Composite Temperature Time",
        s.critical_comp_time.to_string(),
    );
    for (n, k) in s.sensors() {
        line(&format!("Temperature Sensor {n}"), kelvin(k));
    }
    line(
        "Thermal Management T1 Trans Count",
        s.thm_temp1_trans_count.to_string(),
    );
    line(
        "Thermal Management T2 Trans Count",
        s.thm_temp2_trans_count.to_string(),
    );
    line(
        "Thermal Management T1 Total Time",
        s.thm_temp1_total_time.to_string(),
    );
    line(
        "Thermal Management T2 Total Time",
        s.thm_temp2_total_time.to_string(),
    );
    format!("Smart Log for NVME device:{name} namespace-id:ffffffff\n{o}")
}

pub(super) fn cmd_smart(dev: &str, json: bool) -> Result<(), CliError> {
    let name = resolve(dev)?;
    let mut t = IoctlTransport::new(dev_dir());
    let mut buf = vec![0u8; SMART_LOG_LEN];
    let s = read_smart(&mut t, &name, &mut buf).map_err(device_error)?;
    if json {
        print_json(&SmartJson(&s))
    } else {
        print!("{}", smart_text(&name, &s));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nvme::keys;

    use serde_json::Value;

    #[test]
    fn smart_json_uses_nvme_cli_keys_in_order() {
        let s = SmartLog {
            critical_warning: 0x02,
            temperature: 318,
            avail_spare: 99,
            spare_thresh: 10,
            percent_used: 1,
            data_units_read: (1u128 << 70) + 5,
            num_err_log_entries: 3,
            temp_sensors: [320, 0, 315, 0, 0, 0, 0, 0],
            thm_temp2_total_time: 9,
            ..SmartLog::default()
        };
        let v: Value =
            serde_json::from_str(&serde_json::to_string(&SmartJson(&s)).unwrap()).unwrap();
        assert_eq!(
            keys(&v),
            [
                "critical_warning",
                "temperature",
                "avail_spare",
                "spare_thresh",
                "percent_used",
                "endurance_grp_critical_warning_summary",
                "data_units_read",
                "data_units_written",
                "host_read_commands",
                "host_write_commands",
                "controller_busy_time",
                "power_cycles",
                "power_on_hours",
                "unsafe_shutdowns",
                "media_errors",
                "num_err_log_entries",
                "warning_temp_time",
                "critical_comp_time",
                "temperature_sensor_1",
                "temperature_sensor_3",
                "thm_temp1_trans_count",
                "thm_temp2_trans_count",
                "thm_temp1_total_time",
                "thm_temp2_total_time",
            ]
        );
        assert_eq!(v["temperature"], 318);
        assert_eq!(v["critical_warning"], 2);
        assert_eq!(v["temperature_sensor_3"], 315);
        assert_eq!(v["num_err_log_entries"], 3);
        assert_eq!(v["thm_temp2_total_time"], 9);
        // 128-bit counters stay exact as JSON integers.
        let text = serde_json::to_string(&SmartJson(&s)).unwrap();
        assert!(
            text.contains(&format!("\"data_units_read\":{}", (1u128 << 70) + 5)),
            "{text}"
        );
    }

    #[test]
    fn smart_text_shows_celsius_and_kelvin() {
        let s = SmartLog {
            temperature: 310,
            temp_sensors: [0, 300, 0, 0, 0, 0, 0, 0],
            ..SmartLog::default()
        };
        let t = smart_text("nvme0", &s);
        assert!(t.starts_with("Smart Log for NVME device:nvme0 namespace-id:ffffffff\n"));
        assert!(
            t.contains("temperature                             : 37°C (310 Kelvin)"),
            "{t}"
        );
        assert!(t.contains("Temperature Sensor 2"));
        assert!(!t.contains("Temperature Sensor 1"));
    }
}
