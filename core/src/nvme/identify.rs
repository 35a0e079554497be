//! Identify Controller data structure (Identify, CNS 01h, 4096 bytes): the fields dm-remap
//! uses.
//!
//! Offsets (NVM Express Base Specification, "Identify Controller Data Structure"; little-endian):
//!
//! | bytes     | field |
//! |-----------|-------|
//! | 1:0       | PCI Vendor ID (VID) |
//! | 3:2       | PCI Subsystem Vendor ID (SSVID) |
//! | 23:4      | Serial Number (SN, ASCII, space padded) |
//! | 63:24     | Model Number (MN) |
//! | 71:64     | Firmware Revision (FR) |
//! | 72        | Recommended Arbitration Burst (RAB) |
//! | 75:73     | IEEE OUI Identifier (least significant byte first) |
//! | 76        | Controller Multi-Path I/O and Namespace Sharing Capabilities (CMIC) |
//! | 77        | Maximum Data Transfer Size (MDTS, power of two in units of CAP.MPSMIN) |
//! | 79:78     | Controller ID (CNTLID) |
//! | 83:80     | Version (VER) |
//! | 87:84     | RTD3 Resume Latency (RTD3R) |
//! | 91:88     | RTD3 Entry Latency (RTD3E) |
//! | 95:92     | Optional Asynchronous Events Supported (OAES) |
//! | 99:96     | Controller Attributes (CTRATT) |
//! | 111       | Controller Type (CNTRLTYPE) |
//! | 257:256   | Optional Admin Command Support (OACS) |
//! | 258       | Abort Command Limit (ACL) |
//! | 259       | Asynchronous Event Request Limit (AERL) |
//! | 260       | Firmware Updates (FRMW) |
//! | 261       | Log Page Attributes (LPA) |
//! | 262       | Error Log Page Entries (ELPE, 0's based) |
//! | 263       | Number of Power States Support (NPSS, 0's based) |
//! | 267:266   | Warning Composite Temperature Threshold (WCTEMP, Kelvin) |
//! | 269:268   | Critical Composite Temperature Threshold (CCTEMP, Kelvin) |
//! | 295:280   | Total NVM Capacity (TNVMCAP, bytes) |
//! | 311:296   | Unallocated NVM Capacity (UNVMCAP, bytes) |
//! | 512       | Submission Queue Entry Size (SQES) |
//! | 513       | Completion Queue Entry Size (CQES) |
//! | 515:514   | Maximum Outstanding Commands (MAXCMD) |
//! | 519:516   | Number of Namespaces (NN) |
//! | 521:520   | Optional NVM Command Support (ONCS) |
//! | 523:522   | Fused Operation Support (FUSES) |
//! | 524       | Format NVM Attributes (FNA) |
//! | 525       | Volatile Write Cache (VWC) |
//! | 527:526   | Atomic Write Unit Normal (AWUN) |
//! | 529:528   | Atomic Write Unit Power Fail (AWUPF) |
//! | 539:536   | SGL Support (SGLS) |
//! | 1023:768  | NVM Subsystem NVMe Qualified Name (SUBNQN) |

use super::{
    bytes_at, check_len, le128, le16, le32, put_bytes, put_le128, put_le16, put_le32, put_u8,
    u8_at, AsciiField, NvmeError, Page,
};

/// Size of the Identify Controller data structure.
pub const IDENTIFY_LEN: usize = 4096;

/// PCI vendor id of Amazon (Annapurna Labs) NVMe controllers.
pub const VID_AMAZON: u16 = 0x1D0F;

/// LPA bit: SMART / Health log supported per namespace.
pub const LPA_SMART_PER_NS: u8 = 1 << 0;
/// LPA bit: Commands Supported and Effects log supported.
pub const LPA_CMD_EFFECTS: u8 = 1 << 1;
/// LPA bit: extended data for Get Log Page (NUMDU, log page offset) supported.
pub const LPA_EXTENDED_DATA: u8 = 1 << 2;

/// Decoded Identify Controller fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdentifyController {
    /// PCI Vendor ID.
    pub vid: u16,
    /// PCI Subsystem Vendor ID.
    pub ssvid: u16,
    /// Serial Number.
    pub sn: AsciiField<20>,
    /// Model Number.
    pub mn: AsciiField<40>,
    /// Firmware Revision.
    pub fr: AsciiField<8>,
    /// Recommended Arbitration Burst.
    pub rab: u8,
    /// IEEE OUI (24 bits).
    pub ieee: u32,
    /// CMIC bit field.
    pub cmic: u8,
    /// Maximum Data Transfer Size exponent (0 = no limit).
    pub mdts: u8,
    /// Controller ID.
    pub cntlid: u16,
    /// Version: major in bits 31:16, minor 15:8, tertiary 7:0.
    pub ver: u32,
    /// RTD3 Resume Latency, microseconds.
    pub rtd3r: u32,
    /// RTD3 Entry Latency, microseconds.
    pub rtd3e: u32,
    /// Optional Asynchronous Events Supported.
    pub oaes: u32,
    /// Controller Attributes.
    pub ctratt: u32,
    /// Controller Type (0 = not reported, 1 = I/O, 2 = discovery, 3 = administrative).
    pub cntrltype: u8,
    /// Optional Admin Command Support.
    pub oacs: u16,
    /// Abort Command Limit (0's based).
    pub acl: u8,
    /// Asynchronous Event Request Limit (0's based).
    pub aerl: u8,
    /// Firmware Updates bit field.
    pub frmw: u8,
    /// Log Page Attributes (see the `LPA_*` constants).
    pub lpa: u8,
    /// Error Log Page Entries, 0's based.
    pub elpe: u8,
    /// Number of Power States Support, 0's based.
    pub npss: u8,
    /// Warning Composite Temperature Threshold, Kelvin.
    pub wctemp: u16,
    /// Critical Composite Temperature Threshold, Kelvin.
    pub cctemp: u16,
    /// Total NVM Capacity, bytes.
    pub tnvmcap: u128,
    /// Unallocated NVM Capacity, bytes.
    pub unvmcap: u128,
    /// Submission Queue Entry Size (max in bits 7:4, required in 3:0, as powers of two).
    pub sqes: u8,
    /// Completion Queue Entry Size.
    pub cqes: u8,
    /// Maximum Outstanding Commands.
    pub maxcmd: u16,
    /// Number of Namespaces.
    pub nn: u32,
    /// Optional NVM Command Support.
    pub oncs: u16,
    /// Fused Operation Support.
    pub fuses: u16,
    /// Format NVM Attributes.
    pub fna: u8,
    /// Volatile Write Cache (bit 0 = present).
    pub vwc: u8,
    /// Atomic Write Unit Normal (0's based, logical blocks).
    pub awun: u16,
    /// Atomic Write Unit Power Fail (0's based, logical blocks).
    pub awupf: u16,
    /// SGL Support.
    pub sgls: u32,
    /// NVM Subsystem NVMe Qualified Name.
    pub subnqn: AsciiField<256>,
}

impl Default for IdentifyController {
    fn default() -> Self {
        IdentifyController {
            vid: 0,
            ssvid: 0,
            sn: AsciiField::EMPTY,
            mn: AsciiField::EMPTY,
            fr: AsciiField::EMPTY,
            rab: 0,
            ieee: 0,
            cmic: 0,
            mdts: 0,
            cntlid: 0,
            ver: 0,
            rtd3r: 0,
            rtd3e: 0,
            oaes: 0,
            ctratt: 0,
            cntrltype: 0,
            oacs: 0,
            acl: 0,
            aerl: 0,
            frmw: 0,
            lpa: 0,
            elpe: 0,
            npss: 0,
            wctemp: 0,
            cctemp: 0,
            tnvmcap: 0,
            unvmcap: 0,
            sqes: 0,
            cqes: 0,
            maxcmd: 0,
            nn: 0,
            oncs: 0,
            fuses: 0,
            fna: 0,
            vwc: 0,
            awun: 0,
            awupf: 0,
            sgls: 0,
            subnqn: AsciiField::EMPTY,
        }
    }
}

impl IdentifyController {
    /// Decode a 4096-byte Identify Controller data structure.
    pub fn decode(buf: &[u8]) -> Result<Self, NvmeError> {
        check_len(Page::IdentifyController, buf, IDENTIFY_LEN)?;
        let [oui0, oui1, oui2] = bytes_at::<3>(buf, 73)?;
        Ok(IdentifyController {
            vid: le16(buf, 0)?,
            ssvid: le16(buf, 2)?,
            sn: AsciiField::from_raw(&bytes_at::<20>(buf, 4)?),
            mn: AsciiField::from_raw(&bytes_at::<40>(buf, 24)?),
            fr: AsciiField::from_raw(&bytes_at::<8>(buf, 64)?),
            rab: u8_at(buf, 72)?,
            ieee: u32::from_le_bytes([oui0, oui1, oui2, 0]),
            cmic: u8_at(buf, 76)?,
            mdts: u8_at(buf, 77)?,
            cntlid: le16(buf, 78)?,
            ver: le32(buf, 80)?,
            rtd3r: le32(buf, 84)?,
            rtd3e: le32(buf, 88)?,
            oaes: le32(buf, 92)?,
            ctratt: le32(buf, 96)?,
            cntrltype: u8_at(buf, 111)?,
            oacs: le16(buf, 256)?,
            acl: u8_at(buf, 258)?,
            aerl: u8_at(buf, 259)?,
            frmw: u8_at(buf, 260)?,
            lpa: u8_at(buf, 261)?,
            elpe: u8_at(buf, 262)?,
            npss: u8_at(buf, 263)?,
            wctemp: le16(buf, 266)?,
            cctemp: le16(buf, 268)?,
            tnvmcap: le128(buf, 280)?,
            unvmcap: le128(buf, 296)?,
            sqes: u8_at(buf, 512)?,
            cqes: u8_at(buf, 513)?,
            maxcmd: le16(buf, 514)?,
            nn: le32(buf, 516)?,
            oncs: le16(buf, 520)?,
            fuses: le16(buf, 522)?,
            fna: u8_at(buf, 524)?,
            vwc: u8_at(buf, 525)?,
            awun: le16(buf, 526)?,
            awupf: le16(buf, 528)?,
            sgls: le32(buf, 536)?,
            subnqn: AsciiField::from_raw(&bytes_at::<256>(buf, 768)?),
        })
    }

    /// Write the decoded fields into a 4096-byte buffer (strings space padded, every other byte
    /// zero); for fixtures and simulated devices.
    pub fn encode(&self, buf: &mut [u8]) -> Result<(), NvmeError> {
        check_len(Page::IdentifyController, buf, IDENTIFY_LEN)?;
        buf.fill(0);
        put_le16(buf, 0, self.vid)?;
        put_le16(buf, 2, self.ssvid)?;
        self.sn.encode(buf, 4)?;
        self.mn.encode(buf, 24)?;
        self.fr.encode(buf, 64)?;
        put_u8(buf, 72, self.rab)?;
        let [oui0, oui1, oui2, _] = self.ieee.to_le_bytes();
        put_bytes(buf, 73, &[oui0, oui1, oui2])?;
        put_u8(buf, 76, self.cmic)?;
        put_u8(buf, 77, self.mdts)?;
        put_le16(buf, 78, self.cntlid)?;
        put_le32(buf, 80, self.ver)?;
        put_le32(buf, 84, self.rtd3r)?;
        put_le32(buf, 88, self.rtd3e)?;
        put_le32(buf, 92, self.oaes)?;
        put_le32(buf, 96, self.ctratt)?;
        put_u8(buf, 111, self.cntrltype)?;
        put_le16(buf, 256, self.oacs)?;
        put_u8(buf, 258, self.acl)?;
        put_u8(buf, 259, self.aerl)?;
        put_u8(buf, 260, self.frmw)?;
        put_u8(buf, 261, self.lpa)?;
        put_u8(buf, 262, self.elpe)?;
        put_u8(buf, 263, self.npss)?;
        put_le16(buf, 266, self.wctemp)?;
        put_le16(buf, 268, self.cctemp)?;
        put_le128(buf, 280, self.tnvmcap)?;
        put_le128(buf, 296, self.unvmcap)?;
        put_u8(buf, 512, self.sqes)?;
        put_u8(buf, 513, self.cqes)?;
        put_le16(buf, 514, self.maxcmd)?;
        put_le32(buf, 516, self.nn)?;
        put_le16(buf, 520, self.oncs)?;
        put_le16(buf, 522, self.fuses)?;
        put_u8(buf, 524, self.fna)?;
        put_u8(buf, 525, self.vwc)?;
        put_le16(buf, 526, self.awun)?;
        put_le16(buf, 528, self.awupf)?;
        put_le32(buf, 536, self.sgls)?;
        // The NQN is NUL padded on the wire, not space padded.
        let mut nqn = [0u8; 256];
        for (d, s) in nqn.iter_mut().zip(self.subnqn.as_bytes()) {
            *d = *s;
        }
        put_bytes(buf, 768, &nqn)?;
        Ok(())
    }

    /// Major version number (VER bits 31:16).
    pub fn version_major(&self) -> u16 {
        (self.ver >> 16) as u16
    }

    /// Minor version number (VER bits 15:8).
    pub fn version_minor(&self) -> u8 {
        (self.ver >> 8) as u8
    }

    /// Tertiary version number (VER bits 7:0).
    pub fn version_tertiary(&self) -> u8 {
        self.ver as u8
    }

    /// Number of Error Information log entries the controller keeps (ELPE + 1).
    pub fn error_log_entries(&self) -> u16 {
        u16::from(self.elpe) + 1
    }

    /// True if the vendor id is Amazon's.
    pub fn is_amazon(&self) -> bool {
        self.vid == VID_AMAZON
    }

    /// True if the controller has a volatile write cache.
    pub fn has_volatile_write_cache(&self) -> bool {
        self.vwc & 1 != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn put_str(b: &mut [u8], off: usize, width: usize, s: &[u8], pad: u8) {
        b[off..off + width].fill(pad);
        b[off..off + s.len()].copy_from_slice(s);
    }

    fn fixture() -> [u8; IDENTIFY_LEN] {
        let mut b = [0u8; IDENTIFY_LEN];
        b[0..2].copy_from_slice(&0x1D0Fu16.to_le_bytes());
        b[2..4].copy_from_slice(&0x1D0Fu16.to_le_bytes());
        put_str(&mut b, 4, 20, b"vol0123456789abcdef0", b' ');
        put_str(&mut b, 24, 40, b"Amazon Elastic Block Store", b' ');
        put_str(&mut b, 64, 8, b"2.0", 0);
        b[72] = 32;
        b[73..76].copy_from_slice(&[0x02, 0x5e, 0xdc]); // OUI 0xdc5e02
        b[76] = 0;
        b[77] = 6;
        b[78..80].copy_from_slice(&0x0102u16.to_le_bytes());
        b[80..84].copy_from_slice(&0x0001_0400u32.to_le_bytes()); // 1.4.0
        b[84..88].copy_from_slice(&1000u32.to_le_bytes());
        b[88..92].copy_from_slice(&2000u32.to_le_bytes());
        b[92..96].copy_from_slice(&0x100u32.to_le_bytes());
        b[96..100].copy_from_slice(&0x8000_0001u32.to_le_bytes());
        b[111] = 1;
        b[256..258].copy_from_slice(&0x0006u16.to_le_bytes());
        b[258] = 3;
        b[259] = 3;
        b[260] = 0x03;
        b[261] = LPA_EXTENDED_DATA | LPA_SMART_PER_NS;
        b[262] = 63;
        b[263] = 0;
        b[266..268].copy_from_slice(&343u16.to_le_bytes());
        b[268..270].copy_from_slice(&353u16.to_le_bytes());
        b[280..296].copy_from_slice(&(8u128 << 40).to_le_bytes());
        b[296..312].copy_from_slice(&4096u128.to_le_bytes());
        b[512] = 0x66;
        b[513] = 0x44;
        b[514..516].copy_from_slice(&0u16.to_le_bytes());
        b[516..520].copy_from_slice(&1u32.to_le_bytes());
        b[520..522].copy_from_slice(&0x0014u16.to_le_bytes());
        b[522..524].copy_from_slice(&0u16.to_le_bytes());
        b[524] = 0;
        b[525] = 1;
        b[526..528].copy_from_slice(&7u16.to_le_bytes());
        b[528..530].copy_from_slice(&0u16.to_le_bytes());
        b[536..540].copy_from_slice(&0x0000_0001u32.to_le_bytes());
        put_str(
            &mut b,
            768,
            256,
            b"nqn.2014.08.org.nvmexpress:1d0f1d0fvol0123",
            0,
        );
        // Vendor specific area (3072..) carries data the decoder ignores.
        put_str(&mut b, 3072, 32, b"/dev/sdf", b' ');
        b
    }

    #[test]
    fn decodes_fields_at_spec_offsets_and_trims_strings() {
        let id = IdentifyController::decode(&fixture()).unwrap();
        assert_eq!(id.vid, VID_AMAZON);
        assert!(id.is_amazon());
        assert_eq!(id.ssvid, 0x1D0F);
        assert_eq!(id.sn.as_str(), Some("vol0123456789abcdef0"));
        assert_eq!(id.mn.as_str(), Some("Amazon Elastic Block Store"));
        assert_eq!(id.fr.as_str(), Some("2.0"), "NUL padding trimmed");
        assert_eq!(id.rab, 32);
        assert_eq!(id.ieee, 0x00dc_5e02);
        assert_eq!(id.mdts, 6);
        assert_eq!(id.cntlid, 0x0102);
        assert_eq!(
            (
                id.version_major(),
                id.version_minor(),
                id.version_tertiary()
            ),
            (1, 4, 0)
        );
        assert_eq!(id.rtd3r, 1000);
        assert_eq!(id.rtd3e, 2000);
        assert_eq!(id.oaes, 0x100);
        assert_eq!(id.ctratt, 0x8000_0001);
        assert_eq!(id.cntrltype, 1);
        assert_eq!(id.oacs, 6);
        assert_eq!((id.acl, id.aerl, id.frmw), (3, 3, 3));
        assert_eq!(id.lpa, LPA_EXTENDED_DATA | LPA_SMART_PER_NS);
        assert_eq!(id.elpe, 63);
        assert_eq!(id.error_log_entries(), 64);
        assert_eq!(id.npss, 0);
        assert_eq!((id.wctemp, id.cctemp), (343, 353));
        assert_eq!(id.tnvmcap, 8u128 << 40);
        assert_eq!(id.unvmcap, 4096);
        assert_eq!((id.sqes, id.cqes), (0x66, 0x44));
        assert_eq!(id.nn, 1);
        assert_eq!(id.oncs, 0x14);
        assert_eq!(id.vwc, 1);
        assert!(id.has_volatile_write_cache());
        assert_eq!(id.awun, 7);
        assert_eq!(id.sgls, 1);
        assert_eq!(
            id.subnqn.as_str(),
            Some("nqn.2014.08.org.nvmexpress:1d0f1d0fvol0123")
        );
    }

    #[test]
    fn rejects_wrong_length() {
        let b = fixture();
        assert_eq!(
            IdentifyController::decode(&b[..4095]),
            Err(NvmeError::Length {
                page: Page::IdentifyController,
                expected: 4096,
                actual: 4095
            })
        );
        assert!(IdentifyController::decode(&[]).is_err());
    }

    #[test]
    fn encode_then_decode_is_identity_for_fixture() {
        let id = IdentifyController::decode(&fixture()).unwrap();
        let mut out = [0u8; IDENTIFY_LEN];
        id.encode(&mut out).unwrap();
        assert_eq!(IdentifyController::decode(&out).unwrap(), id);
        // Strings are space padded on the wire.
        assert_eq!(&out[64..72], b"2.0     ");
        assert_eq!(out[3072], 0, "vendor specific area is not carried");
    }

    proptest! {
        #[test]
        fn decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..5000)) {
            let r = IdentifyController::decode(&data);
            prop_assert_eq!(r.is_ok(), data.len() == IDENTIFY_LEN);
        }

        #[test]
        fn decode_encode_decode_is_stable(data in proptest::collection::vec(any::<u8>(), IDENTIFY_LEN)) {
            let a = IdentifyController::decode(&data).unwrap();
            let mut out = [0u8; IDENTIFY_LEN];
            a.encode(&mut out).unwrap();
            let b = IdentifyController::decode(&out).unwrap();
            // Strings with embedded NULs/spaces at the end are trimmed identically both times.
            prop_assert_eq!(a, b);
        }
    }
}
