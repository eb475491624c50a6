//! Property tests of the record encoding: round trip, bit-flip and truncation detection.

use hadr_log::{CaptureMark, Page, Record, RecordError};
use proptest::prelude::*;
use proptest::sample::Index;

fn page_data(page_size: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // Incompressible: stored raw.
        proptest::collection::vec(any::<u8>(), page_size),
        // Mostly one byte: compresses well.
        (any::<u8>(), any::<u8>(), 0..page_size).prop_map(move |(a, b, n)| {
            let mut v = vec![a; page_size];
            v[..n].fill(b);
            v
        }),
        // A short repeating pattern, like rows of similar data.
        proptest::collection::vec(any::<u8>(), 1..24).prop_map(move |pat| pat
            .iter()
            .copied()
            .cycle()
            .take(page_size)
            .collect()),
    ]
}

fn record() -> impl Strategy<Value = Record> {
    prop_oneof![4 => 9u32..=13, 1 => Just(16u32)].prop_flat_map(|shift| {
        let ps = 1usize << shift;
        (
            any::<u64>(),
            any::<u64>(),
            any::<u32>(),
            any::<[u32; 5]>(),
            proptest::collection::vec((1u32..=u32::MAX, page_data(ps)), 0..4),
        )
            .prop_map(move |(epoch, t, dbsize, m, pages)| Record {
                epoch,
                commit_time_micros: t,
                db_size_pages: dbsize,
                page_size: ps as u32,
                mark: CaptureMark {
                    salt1: m[0],
                    salt2: m[1],
                    frame_end: m[2],
                    cksum1: m[3],
                    cksum2: m[4],
                },
                pages: pages
                    .into_iter()
                    .map(|(pgno, data)| Page { pgno, data })
                    .collect(),
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn round_trip(rec in record(), lsn in any::<u64>()) {
        let enc = rec.encode(lsn);
        let (dec, n) = Record::decode(&enc, lsn).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(n, enc.len());
        prop_assert_eq!(dec, rec);
    }

    #[test]
    fn decode_stops_at_record_end(a in record(), b in record(), lsn in 0u64..1 << 40) {
        let mut buf = a.encode(lsn);
        let n = buf.len();
        buf.extend_from_slice(&b.encode(lsn + n as u64));
        let (da, na) = Record::decode(&buf, lsn).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(na, n);
        prop_assert_eq!(da, a);
        let (db, _) = Record::decode(&buf[n..], lsn + n as u64).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(db, b);
    }

    #[test]
    fn any_bit_flip_detected(rec in record(), lsn in any::<u64>(), bit in any::<Index>()) {
        let mut enc = rec.encode(lsn);
        let i = bit.index(enc.len() * 8);
        enc[i / 8] ^= 1 << (i % 8);
        let got = Record::decode(&enc, lsn);
        prop_assert!(got.is_err(), "flipping bit {} went undetected", i);
    }

    #[test]
    fn any_truncation_detected(rec in record(), lsn in any::<u64>(), cut in any::<Index>()) {
        let enc = rec.encode(lsn);
        let cut = cut.index(enc.len());
        match Record::decode(&enc[..cut], lsn) {
            Err(RecordError::Incomplete { needed }) => prop_assert!(needed > cut),
            Err(_) => {}
            Ok(_) => prop_assert!(false, "truncation to {} bytes decoded", cut),
        }
    }

    #[test]
    fn truncation_followed_by_other_bytes_detected(
        rec in record(),
        other in record(),
        lsn in 0u64..1 << 40,
        cut in any::<Index>(),
    ) {
        let enc = rec.encode(lsn);
        let cut = cut.index(enc.len());
        let mut buf = enc[..cut].to_vec();
        // What a torn write looks like: the start of one record, then other valid-looking bytes
        // (never a whole record for `lsn`, which would legitimately decode).
        buf.extend_from_slice(&other.encode(lsn + cut as u64 + 1));
        if let Ok((got, _)) = Record::decode(&buf, lsn) {
            prop_assert!(false, "torn record decoded as {:?}", got.epoch);
        }
    }

    #[test]
    fn wrong_lsn_detected(rec in record(), lsn in any::<u64>(), other in any::<u64>()) {
        prop_assume!(lsn != other);
        let enc = rec.encode(lsn);
        prop_assert_eq!(
            Record::decode(&enc, other).err(),
            Some(RecordError::LsnMismatch { stored: lsn, expected: other })
        );
    }
}
