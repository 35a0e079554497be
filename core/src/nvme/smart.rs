//! SMART / Health Information log page (log identifier 02h, 512 bytes).
//!
//! Layout (NVM Express Base Specification, "SMART / Health Information Log Page"; all
//! multi-byte fields little-endian):
//!
//! | bytes   | field |
//! |---------|-------|
//! | 0       | Critical Warning |
//! | 2:1     | Composite Temperature (Kelvin) |
//! | 3       | Available Spare (%) |
//! | 4       | Available Spare Threshold (%) |
//! | 5       | Percentage Used |
//! | 6       | Endurance Group Critical Warning Summary |
//! | 47:32   | Data Units Read (thousands of 512-byte units) |
//! | 63:48   | Data Units Written |
//! | 79:64   | Host Read Commands |
//! | 95:80   | Host Write Commands |
//! | 111:96  | Controller Busy Time (minutes) |
//! | 127:112 | Power Cycles |
//! | 143:128 | Power On Hours |
//! | 159:144 | Unsafe Shutdowns |
//! | 175:160 | Media and Data Integrity Errors |
//! | 191:176 | Number of Error Information Log Entries |
//! | 195:192 | Warning Composite Temperature Time (minutes) |
//! | 199:196 | Critical Composite Temperature Time (minutes) |
//! | 215:200 | Temperature Sensor 1..8 (Kelvin, 2 bytes each, 0 = not reported) |
//! | 219:216 | Thermal Management Temperature 1 Transition Count |
//! | 223:220 | Thermal Management Temperature 2 Transition Count |
//! | 227:224 | Total Time For Thermal Management Temperature 1 (seconds) |
//! | 231:228 | Total Time For Thermal Management Temperature 2 (seconds) |
//!
//! Everything else is reserved and ignored by the decoder (and written as zero by the encoder).

use super::{
    check_len, le128, le16, le32, put_le128, put_le16, put_le32, put_u8, u8_at, NvmeError, Page,
};

/// Size of the SMART / Health Information log page.
pub const SMART_LOG_LEN: usize = 512;

/// Kelvin value of 0 °C, as the spec's integer conversions use it.
pub const KELVIN_OFFSET: i32 = 273;

/// Critical Warning bit: available spare below threshold.
pub const CW_AVAILABLE_SPARE: u8 = 1 << 0;
/// Critical Warning bit: a temperature is outside its threshold.
pub const CW_TEMPERATURE: u8 = 1 << 1;
/// Critical Warning bit: NVM subsystem reliability degraded.
pub const CW_RELIABILITY: u8 = 1 << 2;
/// Critical Warning bit: media placed in read-only mode.
pub const CW_READ_ONLY: u8 = 1 << 3;
/// Critical Warning bit: volatile memory backup device failed.
pub const CW_VOLATILE_BACKUP: u8 = 1 << 4;
/// Critical Warning bit: persistent memory region became read-only.
pub const CW_PMR_READ_ONLY: u8 = 1 << 5;

/// A decoded SMART / Health Information log page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SmartLog {
    /// Critical Warning bit field (see the `CW_*` constants).
    pub critical_warning: u8,
    /// Composite Temperature in Kelvin.
    pub temperature: u16,
    /// Available Spare, percent of the original spare capacity.
    pub avail_spare: u8,
    /// Available Spare Threshold, percent.
    pub spare_thresh: u8,
    /// Percentage Used (may exceed 100).
    pub percent_used: u8,
    /// Endurance Group Critical Warning Summary bit field.
    pub endurance_grp_critical_warning_summary: u8,
    /// Data Units Read, in thousands of 512-byte units.
    pub data_units_read: u128,
    /// Data Units Written, in thousands of 512-byte units.
    pub data_units_written: u128,
    /// Host Read Commands completed.
    pub host_read_commands: u128,
    /// Host Write Commands completed.
    pub host_write_commands: u128,
    /// Controller Busy Time, minutes.
    pub controller_busy_time: u128,
    /// Power Cycles.
    pub power_cycles: u128,
    /// Power On Hours.
    pub power_on_hours: u128,
    /// Unsafe Shutdowns.
    pub unsafe_shutdowns: u128,
    /// Media and Data Integrity Errors.
    pub media_errors: u128,
    /// Number of Error Information Log Entries over the controller's life.
    pub num_err_log_entries: u128,
    /// Warning Composite Temperature Time, minutes.
    pub warning_temp_time: u32,
    /// Critical Composite Temperature Time, minutes.
    pub critical_comp_time: u32,
    /// Temperature Sensors 1..8 in Kelvin (0 = sensor not implemented).
    pub temp_sensors: [u16; 8],
    /// Thermal Management Temperature 1 Transition Count.
    pub thm_temp1_trans_count: u32,
    /// Thermal Management Temperature 2 Transition Count.
    pub thm_temp2_trans_count: u32,
    /// Total Time For Thermal Management Temperature 1, seconds.
    pub thm_temp1_total_time: u32,
    /// Total Time For Thermal Management Temperature 2, seconds.
    pub thm_temp2_total_time: u32,
}

const OFF_TEMP_SENSORS: usize = 200;

impl SmartLog {
    /// Decode a 512-byte SMART / Health Information log page.
    pub fn decode(buf: &[u8]) -> Result<Self, NvmeError> {
        check_len(Page::Smart, buf, SMART_LOG_LEN)?;
        let mut temp_sensors = [0u16; 8];
        let mut off = OFF_TEMP_SENSORS;
        for t in temp_sensors.iter_mut() {
            *t = le16(buf, off)?;
            off += 2;
        }
        Ok(SmartLog {
            critical_warning: u8_at(buf, 0)?,
            temperature: le16(buf, 1)?,
            avail_spare: u8_at(buf, 3)?,
            spare_thresh: u8_at(buf, 4)?,
            percent_used: u8_at(buf, 5)?,
            endurance_grp_critical_warning_summary: u8_at(buf, 6)?,
            data_units_read: le128(buf, 32)?,
            data_units_written: le128(buf, 48)?,
            host_read_commands: le128(buf, 64)?,
            host_write_commands: le128(buf, 80)?,
            controller_busy_time: le128(buf, 96)?,
            power_cycles: le128(buf, 112)?,
            power_on_hours: le128(buf, 128)?,
            unsafe_shutdowns: le128(buf, 144)?,
            media_errors: le128(buf, 160)?,
            num_err_log_entries: le128(buf, 176)?,
            warning_temp_time: le32(buf, 192)?,
            critical_comp_time: le32(buf, 196)?,
            temp_sensors,
            thm_temp1_trans_count: le32(buf, 216)?,
            thm_temp2_trans_count: le32(buf, 220)?,
            thm_temp1_total_time: le32(buf, 224)?,
            thm_temp2_total_time: le32(buf, 228)?,
        })
    }

    /// Write this log into a 512-byte buffer in the on-wire layout (reserved bytes zeroed).
    /// Used to build fixtures for tests, fuzzing and simulated devices.
    pub fn encode(&self, buf: &mut [u8]) -> Result<(), NvmeError> {
        check_len(Page::Smart, buf, SMART_LOG_LEN)?;
        buf.fill(0);
        put_u8(buf, 0, self.critical_warning)?;
        put_le16(buf, 1, self.temperature)?;
        put_u8(buf, 3, self.avail_spare)?;
        put_u8(buf, 4, self.spare_thresh)?;
        put_u8(buf, 5, self.percent_used)?;
        put_u8(buf, 6, self.endurance_grp_critical_warning_summary)?;
        put_le128(buf, 32, self.data_units_read)?;
        put_le128(buf, 48, self.data_units_written)?;
        put_le128(buf, 64, self.host_read_commands)?;
        put_le128(buf, 80, self.host_write_commands)?;
        put_le128(buf, 96, self.controller_busy_time)?;
        put_le128(buf, 112, self.power_cycles)?;
        put_le128(buf, 128, self.power_on_hours)?;
        put_le128(buf, 144, self.unsafe_shutdowns)?;
        put_le128(buf, 160, self.media_errors)?;
        put_le128(buf, 176, self.num_err_log_entries)?;
        put_le32(buf, 192, self.warning_temp_time)?;
        put_le32(buf, 196, self.critical_comp_time)?;
        let mut off = OFF_TEMP_SENSORS;
        for t in self.temp_sensors {
            put_le16(buf, off, t)?;
            off += 2;
        }
        put_le32(buf, 216, self.thm_temp1_trans_count)?;
        put_le32(buf, 220, self.thm_temp2_trans_count)?;
        put_le32(buf, 224, self.thm_temp1_total_time)?;
        put_le32(buf, 228, self.thm_temp2_total_time)?;
        Ok(())
    }

    /// Composite temperature in whole degrees Celsius (Kelvin − 273).
    pub fn temperature_celsius(&self) -> i32 {
        i32::from(self.temperature) - KELVIN_OFFSET
    }

    /// True if any Critical Warning bit is set.
    pub fn has_critical_warning(&self) -> bool {
        self.critical_warning != 0
    }

    /// The implemented temperature sensors as (sensor number 1..=8, Kelvin).
    pub fn sensors(&self) -> impl Iterator<Item = (u8, u16)> + '_ {
        (1u8..)
            .zip(self.temp_sensors.iter().copied())
            .filter(|&(_, k)| k != 0)
    }

    /// Bytes read by the host, computed from Data Units Read (each unit is 1000 × 512 bytes),
    /// saturating at `u128::MAX`.
    pub fn bytes_read(&self) -> u128 {
        self.data_units_read.saturating_mul(512_000)
    }

    /// Bytes written by the host, computed from Data Units Written, saturating.
    pub fn bytes_written(&self) -> u128 {
        self.data_units_written.saturating_mul(512_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A page built byte by byte from the spec's offsets, independent of the encoder.
    fn fixture() -> [u8; SMART_LOG_LEN] {
        let mut b = [0u8; SMART_LOG_LEN];
        b[0] = 0x05; // available spare + reliability
        b[1..3].copy_from_slice(&310u16.to_le_bytes());
        b[3] = 97;
        b[4] = 10;
        b[5] = 3;
        b[6] = 0x01;
        // Reserved bytes 7..32 carry garbage the decoder must ignore.
        for (i, x) in b[7..32].iter_mut().enumerate() {
            *x = 0xA0 | i as u8;
        }
        let big: u128 = (1u128 << 100) + 12345;
        b[32..48].copy_from_slice(&big.to_le_bytes());
        b[48..64].copy_from_slice(&2_000_000u128.to_le_bytes());
        b[64..80].copy_from_slice(&3u128.to_le_bytes());
        b[80..96].copy_from_slice(&4u128.to_le_bytes());
        b[96..112].copy_from_slice(&5u128.to_le_bytes());
        b[112..128].copy_from_slice(&6u128.to_le_bytes());
        b[128..144].copy_from_slice(&7u128.to_le_bytes());
        b[144..160].copy_from_slice(&8u128.to_le_bytes());
        b[160..176].copy_from_slice(&9u128.to_le_bytes());
        b[176..192].copy_from_slice(&u128::MAX.to_le_bytes());
        b[192..196].copy_from_slice(&11u32.to_le_bytes());
        b[196..200].copy_from_slice(&12u32.to_le_bytes());
        for s in 0..8u16 {
            let off = 200 + 2 * s as usize;
            let v = if s == 2 { 0 } else { 300 + s };
            b[off..off + 2].copy_from_slice(&v.to_le_bytes());
        }
        b[216..220].copy_from_slice(&13u32.to_le_bytes());
        b[220..224].copy_from_slice(&14u32.to_le_bytes());
        b[224..228].copy_from_slice(&15u32.to_le_bytes());
        b[228..232].copy_from_slice(&0xFFFF_FFFFu32.to_le_bytes());
        b[511] = 0x77; // reserved tail
        b
    }

    #[test]
    fn decodes_every_field_at_its_spec_offset() {
        let s = SmartLog::decode(&fixture()).expect("decode");
        assert_eq!(s.critical_warning, 0x05);
        assert!(s.critical_warning & CW_AVAILABLE_SPARE != 0);
        assert!(s.critical_warning & CW_RELIABILITY != 0);
        assert!(s.critical_warning & CW_TEMPERATURE == 0);
        assert_eq!(s.temperature, 310);
        assert_eq!(s.temperature_celsius(), 37);
        assert_eq!(s.avail_spare, 97);
        assert_eq!(s.spare_thresh, 10);
        assert_eq!(s.percent_used, 3);
        assert_eq!(s.endurance_grp_critical_warning_summary, 1);
        assert_eq!(s.data_units_read, (1u128 << 100) + 12345);
        assert_eq!(s.data_units_written, 2_000_000);
        assert_eq!(s.host_read_commands, 3);
        assert_eq!(s.host_write_commands, 4);
        assert_eq!(s.controller_busy_time, 5);
        assert_eq!(s.power_cycles, 6);
        assert_eq!(s.power_on_hours, 7);
        assert_eq!(s.unsafe_shutdowns, 8);
        assert_eq!(s.media_errors, 9);
        assert_eq!(s.num_err_log_entries, u128::MAX);
        assert_eq!(s.warning_temp_time, 11);
        assert_eq!(s.critical_comp_time, 12);
        assert_eq!(s.temp_sensors, [300, 301, 0, 303, 304, 305, 306, 307]);
        assert_eq!(s.thm_temp1_trans_count, 13);
        assert_eq!(s.thm_temp2_trans_count, 14);
        assert_eq!(s.thm_temp1_total_time, 15);
        assert_eq!(s.thm_temp2_total_time, 0xFFFF_FFFF);
        let sensors: [(u8, u16); 7] = [
            (1, 300),
            (2, 301),
            (4, 303),
            (5, 304),
            (6, 305),
            (7, 306),
            (8, 307),
        ];
        assert!(s.sensors().eq(sensors.iter().copied()));
        assert_eq!(s.bytes_written(), 2_000_000u128 * 512_000);
        assert_eq!(
            SmartLog {
                data_units_read: u128::MAX,
                ..s
            }
            .bytes_read(),
            u128::MAX,
            "saturates"
        );
    }

    #[test]
    fn rejects_wrong_lengths() {
        let b = fixture();
        for len in [0usize, 1, 232, 511] {
            assert_eq!(
                SmartLog::decode(&b[..len]),
                Err(NvmeError::Length {
                    page: Page::Smart,
                    expected: 512,
                    actual: len
                })
            );
        }
        let big = [0u8; 513];
        assert!(SmartLog::decode(&big).is_err());
        let mut out = [0u8; 100];
        assert!(SmartLog::default().encode(&mut out).is_err());
    }

    #[test]
    fn encode_matches_hand_built_layout_except_reserved() {
        let b = fixture();
        let s = SmartLog::decode(&b).unwrap();
        let mut out = [0xEEu8; SMART_LOG_LEN];
        s.encode(&mut out).unwrap();
        let mut expect = b;
        expect[7..32].fill(0);
        expect[511] = 0;
        assert_eq!(out[..], expect[..]);
    }

    fn arb_smart() -> impl Strategy<Value = SmartLog> {
        (
            (
                any::<u8>(),
                any::<u16>(),
                any::<u8>(),
                any::<u8>(),
                any::<u8>(),
                any::<u8>(),
            ),
            proptest::array::uniform10(any::<u128>()),
            (
                any::<u32>(),
                any::<u32>(),
                proptest::array::uniform8(any::<u16>()),
            ),
            proptest::array::uniform4(any::<u32>()),
        )
            .prop_map(|(a, c, (w, cr, ts), t)| SmartLog {
                critical_warning: a.0,
                temperature: a.1,
                avail_spare: a.2,
                spare_thresh: a.3,
                percent_used: a.4,
                endurance_grp_critical_warning_summary: a.5,
                data_units_read: c[0],
                data_units_written: c[1],
                host_read_commands: c[2],
                host_write_commands: c[3],
                controller_busy_time: c[4],
                power_cycles: c[5],
                power_on_hours: c[6],
                unsafe_shutdowns: c[7],
                media_errors: c[8],
                num_err_log_entries: c[9],
                warning_temp_time: w,
                critical_comp_time: cr,
                temp_sensors: ts,
                thm_temp1_trans_count: t[0],
                thm_temp2_trans_count: t[1],
                thm_temp1_total_time: t[2],
                thm_temp2_total_time: t[3],
            })
    }

    proptest! {
        #[test]
        fn decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..1100)) {
            let r = SmartLog::decode(&data);
            prop_assert_eq!(r.is_ok(), data.len() == SMART_LOG_LEN);
        }

        #[test]
        fn encode_decode_round_trip(s in arb_smart()) {
            let mut buf = [0u8; SMART_LOG_LEN];
            s.encode(&mut buf).unwrap();
            prop_assert_eq!(SmartLog::decode(&buf).unwrap(), s);
        }

        #[test]
        fn decode_encode_round_trip_on_defined_bytes(mut data in proptest::collection::vec(any::<u8>(), SMART_LOG_LEN)) {
            // Zero the reserved areas; then decode→encode must give back the same bytes.
            data[7..32].fill(0);
            data[232..].fill(0);
            let s = SmartLog::decode(&data).unwrap();
            let mut out = [0u8; SMART_LOG_LEN];
            s.encode(&mut out).unwrap();
            prop_assert_eq!(&out[..], &data[..]);
        }
    }
}
