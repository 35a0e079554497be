//! Per-controller device-type cache with time-to-live.
//!
//! Detecting a controller's type costs an Identify and, for Amazon devices, a read of the
//! statistics page. The outcome is kept per controller name: a successful detection for 5
//! minutes, a failed one for 30 seconds (so a broken device is retried soon, but not hammered
//! every scrape). An entry also records the serial number it was made for; a lookup with a
//! different serial (the name was reused by another device) is a miss. Expired entries are
//! dropped on lookup and by [`TypeCache::cleanup`]. Times are passed in, so tests control the
//! clock.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use dmremap_core::nvme::aws::AwsDeviceKind;

/// Time a successful detection stays valid.
pub const TTL_SUCCESS: Duration = Duration::from_secs(300);
/// Time a failed detection is remembered.
pub const TTL_FAILURE: Duration = Duration::from_secs(30);

/// What a controller is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeviceType {
    /// Amazon EBS volume (statistics page confirmed by its magic).
    Ebs,
    /// Amazon EC2 instance-store volume (statistics page confirmed by its magic).
    InstanceStore,
    /// Any other NVMe controller.
    Other,
}

impl DeviceType {
    /// The Amazon kind, if any.
    pub fn aws_kind(self) -> Option<AwsDeviceKind> {
        match self {
            DeviceType::Ebs => Some(AwsDeviceKind::Ebs),
            DeviceType::InstanceStore => Some(AwsDeviceKind::InstanceStore),
            DeviceType::Other => None,
        }
    }

    /// Short name: `ebs`, `instance-store`, `other`.
    pub fn name(self) -> &'static str {
        match self {
            DeviceType::Ebs => "ebs",
            DeviceType::InstanceStore => "instance-store",
            DeviceType::Other => "other",
        }
    }
}

impl From<AwsDeviceKind> for DeviceType {
    fn from(k: AwsDeviceKind) -> Self {
        match k {
            AwsDeviceKind::Ebs => DeviceType::Ebs,
            AwsDeviceKind::InstanceStore => DeviceType::InstanceStore,
        }
    }
}

/// Result of detecting one controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Detection {
    /// Device type.
    pub device_type: DeviceType,
    /// PCI vendor id from Identify Controller.
    pub vid: u16,
    /// Model number from Identify Controller.
    pub model: String,
    /// Serial number from Identify Controller.
    pub serial: String,
    /// Firmware revision from Identify Controller.
    pub firmware: String,
    /// Error Information log entries the controller keeps (ELPE + 1).
    pub error_log_entries: u16,
}

#[derive(Clone, Debug)]
struct Entry {
    serial: String,
    outcome: Result<Detection, String>,
    expires: Instant,
}

/// Hit/miss counters and size of a [`TypeCache`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that found nothing valid.
    pub misses: u64,
    /// Entries dropped because they expired (or their serial changed).
    pub evictions: u64,
    /// Entries currently held.
    pub entries: usize,
}

/// The cache.
#[derive(Debug)]
pub struct TypeCache {
    entries: HashMap<String, Entry>,
    ttl_success: Duration,
    ttl_failure: Duration,
    hits: u64,
    misses: u64,
    evictions: u64,
}

impl Default for TypeCache {
    fn default() -> Self {
        Self::new()
    }
}

impl TypeCache {
    /// A cache with the standard TTLs (5 min success, 30 s failure).
    pub fn new() -> Self {
        Self::with_ttls(TTL_SUCCESS, TTL_FAILURE)
    }

    /// A cache with custom TTLs.
    pub fn with_ttls(ttl_success: Duration, ttl_failure: Duration) -> Self {
        TypeCache {
            entries: HashMap::new(),
            ttl_success,
            ttl_failure,
            hits: 0,
            misses: 0,
            evictions: 0,
        }
    }

    /// The cached outcome for `controller` if it was made for `serial` and has not expired at
    /// `now`. Counts a hit or a miss; an expired or stale entry is removed.
    pub fn lookup(
        &mut self,
        controller: &str,
        serial: &str,
        now: Instant,
    ) -> Option<&Result<Detection, String>> {
        let valid = match self.entries.get(controller) {
            Some(e) => e.serial == serial && now < e.expires,
            None => {
                self.misses += 1;
                return None;
            }
        };
        if !valid {
            self.entries.remove(controller);
            self.evictions += 1;
            self.misses += 1;
            return None;
        }
        self.hits += 1;
        self.entries.get(controller).map(|e| &e.outcome)
    }

    /// Remember a successful detection until `now + ttl_success`.
    pub fn store_success(
        &mut self,
        controller: &str,
        serial: &str,
        detection: Detection,
        now: Instant,
    ) {
        let expires = now + self.ttl_success;
        self.put(controller, serial, Ok(detection), expires);
    }

    /// Remember a failed detection until `now + ttl_failure`.
    pub fn store_failure(&mut self, controller: &str, serial: &str, why: String, now: Instant) {
        let expires = now + self.ttl_failure;
        self.put(controller, serial, Err(why), expires);
    }

    fn put(
        &mut self,
        controller: &str,
        serial: &str,
        outcome: Result<Detection, String>,
        expires: Instant,
    ) {
        match self.entries.get_mut(controller) {
            Some(e) => {
                e.serial.clear();
                e.serial.push_str(serial);
                e.outcome = outcome;
                e.expires = expires;
            }
            None => {
                self.entries.insert(
                    controller.to_string(),
                    Entry {
                        serial: serial.to_string(),
                        outcome,
                        expires,
                    },
                );
            }
        }
    }

    /// Drop every entry that has expired at `now`; returns how many were dropped.
    pub fn cleanup(&mut self, now: Instant) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, e| now < e.expires);
        let dropped = before - self.entries.len();
        self.evictions += dropped as u64;
        dropped
    }

    /// Drop every entry (counters are kept).
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Drop the entry of one controller.
    pub fn invalidate(&mut self, controller: &str) -> bool {
        self.entries.remove(controller).is_some()
    }

    /// Counters and size.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits,
            misses: self.misses,
            evictions: self.evictions,
            entries: self.entries.len(),
        }
    }

    /// Number of entries held (expired ones included until cleaned up).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if no entry is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(t: DeviceType) -> Detection {
        Detection {
            device_type: t,
            vid: 0x1d0f,
            model: "m".into(),
            serial: "s1".into(),
            firmware: "f".into(),
            error_log_entries: 64,
        }
    }

    #[test]
    fn success_lives_five_minutes_failure_thirty_seconds() {
        let t0 = Instant::now();
        let mut c = TypeCache::new();
        assert!(c.lookup("nvme0", "s1", t0).is_none());
        c.store_success("nvme0", "s1", det(DeviceType::Ebs), t0);
        c.store_failure("nvme1", "s2", "nvme1: identify controller: boom".into(), t0);

        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(
            c.lookup("nvme0", "s1", at(299))
                .unwrap()
                .as_ref()
                .unwrap()
                .device_type,
            DeviceType::Ebs
        );
        assert!(c.lookup("nvme1", "s2", at(29)).unwrap().is_err());
        assert!(
            c.lookup("nvme1", "s2", at(30)).is_none(),
            "failure expired at 30 s"
        );
        assert!(
            c.lookup("nvme0", "s1", at(300)).is_none(),
            "success expired at 300 s"
        );
        let s = c.stats();
        assert_eq!((s.hits, s.misses, s.evictions, s.entries), (2, 3, 2, 0));
    }

    #[test]
    fn serial_change_is_a_miss() {
        let t0 = Instant::now();
        let mut c = TypeCache::new();
        c.store_success("nvme0", "s1", det(DeviceType::Other), t0);
        assert!(c.lookup("nvme0", "OTHER", t0).is_none());
        assert!(c.is_empty(), "stale entry dropped");
        assert!(c.lookup("nvme0", "s1", t0).is_none());
        assert_eq!(c.stats().hits, 0);
    }

    #[test]
    fn cleanup_removes_only_expired_entries() {
        let t0 = Instant::now();
        let mut c = TypeCache::with_ttls(Duration::from_secs(10), Duration::from_secs(2));
        c.store_success("nvme0", "a", det(DeviceType::Other), t0);
        c.store_failure("nvme1", "b", "x".into(), t0);
        c.store_success(
            "nvme2",
            "c",
            det(DeviceType::InstanceStore),
            t0 + Duration::from_secs(5),
        );
        assert_eq!(c.cleanup(t0 + Duration::from_secs(1)), 0);
        assert_eq!(c.cleanup(t0 + Duration::from_secs(2)), 1);
        assert_eq!(c.len(), 2);
        assert_eq!(c.cleanup(t0 + Duration::from_secs(10)), 1);
        assert_eq!(c.len(), 1);
        assert!(c
            .lookup("nvme2", "c", t0 + Duration::from_secs(14))
            .is_some());
        assert_eq!(c.stats().evictions, 2);
    }

    #[test]
    fn restore_replaces_and_clear_keeps_counters() {
        let t0 = Instant::now();
        let mut c = TypeCache::new();
        c.store_failure("nvme0", "a", "x".into(), t0);
        c.store_success("nvme0", "a", det(DeviceType::Ebs), t0);
        assert_eq!(c.len(), 1);
        assert!(
            c.lookup("nvme0", "a", t0 + Duration::from_secs(100))
                .unwrap()
                .is_ok(),
            "now has the success TTL"
        );
        c.clear();
        assert!(c.is_empty());
        assert_eq!(c.stats().hits, 1);
        c.store_success("nvme0", "a", det(DeviceType::Ebs), t0);
        assert!(c.invalidate("nvme0"));
        assert!(!c.invalidate("nvme0"));
    }
}
