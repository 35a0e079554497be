//! Remap index logic: what an index entry means and how a bio is cut into pieces.
//!
//! The main device's sectors (relative to the target start) are grouped into blocks of
//! `1 << shift` sectors. The index maps a block number to an [`Entry`]. A bio is served one piece
//! at a time: [`plan`] returns the longest prefix that goes to a single place — a run of blocks that
//! are all on main, or the part of the bio inside one remapped block — and the caller accepts that
//! much of the bio (device-mapper's `dm_accept_partial_bio`) and is called again for the rest.
//!
//! No allocation, no panics, no floating point: this file is compiled into the kernel module.

/// An index entry, stored as an integer (the kernel's index, `kmod/index.c`, holds values of up
/// to 62 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// The block lives in spare slot `slot`.
    Remapped {
        /// Slot number in the spare data area.
        slot: u64,
    },
    /// The block could not be read and has no spare slot yet: reads still go to main (and fail
    /// there if it is still unreadable); the next write of the whole block gives it a slot.
    Pending,
}

const PENDING_BIT: u64 = 1 << 61;
/// Largest slot number an entry can hold.
pub const MAX_SLOT: u64 = PENDING_BIT - 1;

impl Entry {
    /// The integer form.
    pub fn encode(self) -> u64 {
        match self {
            Entry::Remapped { slot } => slot & MAX_SLOT,
            Entry::Pending => PENDING_BIT,
        }
    }

    /// Decode the integer form.
    pub fn decode(v: u64) -> Entry {
        if v & PENDING_BIT != 0 {
            Entry::Pending
        } else {
            Entry::Remapped { slot: v & MAX_SLOT }
        }
    }
}

/// Read access to a remap index.
pub trait Lookup {
    /// The first entry with block number in `first..=last`, if any.
    fn first_in(&self, first: u64, last: u64) -> Option<(u64, Entry)>;
}

/// Where a piece of a bio goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// To main, at the same relative sector.
    Main,
    /// To the spare data area, at this sector relative to the data area's start.
    Spare(u64),
    /// To main, but the piece covers exactly part of one pending block.
    MainPending,
}

/// The first piece of a bio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// Sectors in this piece (at least 1 when the bio has sectors).
    pub sectors: u32,
    /// Where it goes.
    pub dest: Dest,
    /// Block number of the piece's first sector.
    pub block: u64,
}

/// Plan the first piece of a bio of `sectors` sectors at relative sector `rel`, with blocks of
/// `1 << shift` sectors.
pub fn plan<L: Lookup + ?Sized>(index: &L, rel: u64, sectors: u32, shift: u32) -> Piece {
    let first = rel >> shift;
    if sectors == 0 {
        return Piece {
            sectors,
            dest: Dest::Main,
            block: first,
        };
    }
    let last = (rel + u64::from(sectors) - 1) >> shift;
    match index.first_in(first, last) {
        None => Piece {
            sectors,
            dest: Dest::Main,
            block: first,
        },
        Some((b, _)) if b > first => {
            // Main up to the first block that lives elsewhere.
            let n = (b << shift) - rel;
            Piece {
                sectors: n as u32,
                dest: Dest::Main,
                block: first,
            }
        }
        Some((_, entry)) => {
            let end_of_block = (first + 1) << shift;
            let n = (end_of_block - rel).min(u64::from(sectors)) as u32;
            let within = rel - (first << shift);
            let dest = match entry {
                Entry::Remapped { slot } => Dest::Spare((slot << shift) + within),
                Entry::Pending => Dest::MainPending,
            };
            Piece {
                sectors: n,
                dest,
                block: first,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::collections::BTreeMap;

    struct Model(BTreeMap<u64, Entry>);
    impl Lookup for Model {
        fn first_in(&self, first: u64, last: u64) -> Option<(u64, Entry)> {
            self.0.range(first..=last).next().map(|(&b, &e)| (b, e))
        }
    }

    #[test]
    fn entry_round_trip() {
        for e in [
            Entry::Pending,
            Entry::Remapped { slot: 0 },
            Entry::Remapped { slot: MAX_SLOT },
        ] {
            assert_eq!(Entry::decode(e.encode()), e);
            assert!(e.encode() < (1 << 62), "fits in 62 bits");
        }
    }

    #[test]
    fn no_remaps_is_one_piece() {
        let m = Model(BTreeMap::new());
        assert_eq!(
            plan(&m, 123, 2048, 3),
            Piece {
                sectors: 2048,
                dest: Dest::Main,
                block: 15
            }
        );
    }

    #[test]
    fn pieces_around_a_remapped_block() {
        let mut map = BTreeMap::new();
        map.insert(2, Entry::Remapped { slot: 7 });
        let m = Model(map);
        // Bio of 32 sectors from sector 4: 12 to main, 8 to the slot, 12 to main.
        assert_eq!(
            plan(&m, 4, 32, 3),
            Piece {
                sectors: 12,
                dest: Dest::Main,
                block: 0
            }
        );
        assert_eq!(
            plan(&m, 16, 20, 3),
            Piece {
                sectors: 8,
                dest: Dest::Spare(56),
                block: 2
            }
        );
        assert_eq!(
            plan(&m, 24, 12, 3),
            Piece {
                sectors: 12,
                dest: Dest::Main,
                block: 3
            }
        );
        // Unaligned start inside the remapped block.
        assert_eq!(
            plan(&m, 19, 2, 3),
            Piece {
                sectors: 2,
                dest: Dest::Spare(59),
                block: 2
            }
        );
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Cutting a bio with `plan` sends every sector exactly where the model says.
            #[test]
            fn every_sector_lands_right(
                shift in 0u32..6,
                blocks in proptest::collection::btree_map(0u64..64, (0u64..1000, any::<bool>()), 0..40),
                rel in 0u64..(64 * 32),
                sectors in 1u32..600,
            ) {
                let map: BTreeMap<u64, Entry> = blocks.iter().map(|(&b, &(slot, pending))| {
                    (b, if pending { Entry::Pending } else { Entry::Remapped { slot } })
                }).collect();
                let m = Model(map.clone());
                let mut pos = rel;
                let mut left = sectors;
                let mut pieces = 0;
                while left > 0 {
                    let p = plan(&m, pos, left, shift);
                    prop_assert!(p.sectors >= 1 && p.sectors <= left);
                    prop_assert_eq!(p.block, pos >> shift);
                    for i in 0..u64::from(p.sectors) {
                        let s = pos + i;
                        let want = match map.get(&(s >> shift)) {
                            Some(Entry::Remapped { slot }) => Dest::Spare((slot << shift) + (s & ((1 << shift) - 1))),
                            Some(Entry::Pending) => Dest::MainPending,
                            None => Dest::Main,
                        };
                        let got = match p.dest {
                            Dest::Spare(base) => Dest::Spare(base + i),
                            d => d,
                        };
                        prop_assert_eq!(got, want, "sector {}", s);
                    }
                    // Pieces off main stay inside one block.
                    if p.dest != Dest::Main {
                        prop_assert_eq!((pos + u64::from(p.sectors) - 1) >> shift, pos >> shift);
                    }
                    pos += u64::from(p.sectors);
                    left -= p.sectors;
                    pieces += 1;
                }
                // Never more pieces than needed: each remapped/pending block at most one piece plus
                // one main run between them.
                let touched = map.range((rel >> shift)..=((rel + u64::from(sectors) - 1) >> shift)).count();
                prop_assert!(pieces <= 2 * touched + 1);
            }
        }
    }
}
