//! AS_PATH and AS4_PATH (RFC 4271 4.3 and 9.1.2.2, RFC 6793): segment codec in 2- or
//! 4-octet form, the path length used by the decision process, and the merge of an
//! AS4_PATH into a 2-octet AS_PATH.

use nom::multi::count;
use nom::number::complete::{be_u8, be_u16, be_u32};
use nom::{IResult, Parser};

use super::{AS_TRANS, AsPath, AsSegment};

const AS_SET: u8 = 1;
const AS_SEQUENCE: u8 = 2;
const AS_CONFED_SEQUENCE: u8 = 3;
const AS_CONFED_SET: u8 = 4;

impl AsPath {
    /// An AS_PATH of one AS_SEQUENCE.
    pub fn from_sequence(asns: Vec<u32>) -> AsPath {
        if asns.is_empty() {
            return AsPath::default();
        }
        AsPath {
            segments: vec![AsSegment::Sequence(asns)],
        }
    }

    /// The path length of RFC 4271 9.1.2.2 a): every AS of an AS_SEQUENCE counts, an
    /// AS_SET counts as one whatever its size.
    pub fn length(&self) -> usize {
        self.segments
            .iter()
            .map(|segment| match segment {
                AsSegment::Sequence(asns) => asns.len(),
                AsSegment::Set(_) => 1,
            })
            .sum()
    }

    /// The neighbor AS of RFC 4271 9.1.2.2 c): the leftmost AS when the path starts with
    /// an AS_SEQUENCE; `None` for an empty (iBGP-originated) path or a leading AS_SET.
    pub fn neighbor_as(&self) -> Option<u32> {
        match self.segments.first()? {
            AsSegment::Sequence(asns) => asns.first().copied(),
            AsSegment::Set(_) => None,
        }
    }

    /// Whether `asn` appears anywhere in the path (loop detection, RFC 4271 9.1.2).
    pub fn contains(&self, asn: u32) -> bool {
        self.segments.iter().any(|segment| match segment {
            AsSegment::Sequence(asns) | AsSegment::Set(asns) => asns.contains(&asn),
        })
    }

    /// Whether some AS needs 4 octets, so that a 2-octet session needs AS4_PATH.
    pub(super) fn needs_four_octets(&self) -> bool {
        self.segments.iter().any(|segment| match segment {
            AsSegment::Sequence(asns) | AsSegment::Set(asns) => {
                asns.iter().any(|&asn| asn > u32::from(u16::MAX))
            }
        })
    }
}

/// Decodes an AS_PATH (or, with `four_octet`, an AS4_PATH) value. The `Err` is the
/// reason the attribute is malformed (RFC 7606 7.2, RFC 7607).
pub(super) fn decode(mut input: &[u8], four_octet: bool) -> Result<AsPath, &'static str> {
    let mut segments = Vec::new();
    while !input.is_empty() {
        let header: IResult<&[u8], (u8, u8), ()> = (be_u8, be_u8).parse_complete(input);
        let (rest, (segment_type, segment_len)) =
            header.map_err(|_| "a single octet left where a segment header belongs")?;
        if segment_len == 0 {
            return Err("segment of length zero");
        }
        let asns: IResult<&[u8], Vec<u32>, ()> = if four_octet {
            count(be_u32, usize::from(segment_len)).parse_complete(rest)
        } else {
            count(be_u16.map(u32::from), usize::from(segment_len)).parse_complete(rest)
        };
        let (rest, asns) = asns.map_err(|_| "segment runs past the end of the attribute")?;
        if asns.contains(&0) {
            return Err("AS number 0 (RFC 7607)");
        }
        segments.push(match segment_type {
            AS_SET => AsSegment::Set(asns),
            AS_SEQUENCE => AsSegment::Sequence(asns),
            AS_CONFED_SEQUENCE | AS_CONFED_SET => {
                return Err("confederation segment from a peer outside our confederation");
            }
            _ => return Err("unknown segment type"),
        });
        input = rest;
    }
    Ok(AsPath { segments })
}

/// Appends the segments of `path`, splitting those longer than 255 ASes. In 2-octet form,
/// an AS that needs 4 octets is written as AS_TRANS.
pub(super) fn encode(path: &AsPath, four_octet: bool, out: &mut Vec<u8>) {
    for segment in &path.segments {
        let (segment_type, asns) = match segment {
            AsSegment::Set(asns) => (AS_SET, asns),
            AsSegment::Sequence(asns) => (AS_SEQUENCE, asns),
        };
        for chunk in asns.chunks(usize::from(u8::MAX)) {
            out.push(segment_type);
            out.push(chunk.len() as u8);
            for &asn in chunk {
                if four_octet {
                    out.extend_from_slice(&asn.to_be_bytes());
                } else {
                    let two = u16::try_from(asn).unwrap_or(AS_TRANS);
                    out.extend_from_slice(&two.to_be_bytes());
                }
            }
        }
    }
}

/// RFC 6793 4.2.3: the path a 2-octet session means, from its AS_PATH and AS4_PATH. When
/// AS_PATH is shorter than AS4_PATH the AS4_PATH is ignored; otherwise the leading ASes
/// AS_PATH has beyond AS4_PATH's count are kept in front of AS4_PATH.
pub(super) fn merge_as4_path(as_path: AsPath, as4_path: AsPath) -> AsPath {
    let (len, len4) = (as_path.length(), as4_path.length());
    if len < len4 {
        return as_path;
    }
    let mut wanted = len - len4;
    let mut segments: Vec<AsSegment> = Vec::new();
    for segment in as_path.segments {
        if wanted == 0 {
            break;
        }
        match segment {
            AsSegment::Set(asns) => {
                wanted -= 1;
                segments.push(AsSegment::Set(asns));
            }
            AsSegment::Sequence(mut asns) => {
                let take = wanted.min(asns.len());
                asns.truncate(take);
                wanted -= take;
                segments.push(AsSegment::Sequence(asns));
            }
        }
    }
    for segment in as4_path.segments {
        match (segments.last_mut(), segment) {
            (Some(AsSegment::Sequence(head)), AsSegment::Sequence(tail)) => head.extend(tail),
            (_, segment) => segments.push(segment),
        }
    }
    AsPath { segments }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(asns: &[u32]) -> AsSegment {
        AsSegment::Sequence(asns.to_vec())
    }

    fn set(asns: &[u32]) -> AsSegment {
        AsSegment::Set(asns.to_vec())
    }

    #[test]
    fn an_as_set_counts_as_one_in_the_path_length() {
        let path = AsPath {
            segments: vec![seq(&[65001, 65002]), set(&[1, 2, 3])],
        };
        assert_eq!(path.length(), 3);
        assert_eq!(AsPath::default().length(), 0);
    }

    #[test]
    fn neighbor_as_is_the_leftmost_as_of_a_leading_sequence() {
        let path = AsPath {
            segments: vec![seq(&[65001, 65002])],
        };
        assert_eq!(path.neighbor_as(), Some(65001));
        assert_eq!(AsPath::default().neighbor_as(), None);
        let set_first = AsPath {
            segments: vec![set(&[65001])],
        };
        assert_eq!(set_first.neighbor_as(), None);
        assert!(set_first.contains(65001));
        assert!(!set_first.contains(65002));
    }

    #[test]
    fn two_octet_paths_round_trip() {
        let path = AsPath {
            segments: vec![seq(&[65001, 65002]), set(&[7, 8])],
        };
        let mut out = Vec::new();
        encode(&path, false, &mut out);
        assert_eq!(out, [2, 2, 0xfd, 0xe9, 0xfd, 0xea, 1, 2, 0, 7, 0, 8]);
        assert_eq!(decode(&out, false), Ok(path));
    }

    #[test]
    fn four_octet_ases_become_as_trans_in_two_octet_form() {
        let path = AsPath::from_sequence(vec![4_200_000_000, 65001]);
        let mut out = Vec::new();
        encode(&path, false, &mut out);
        assert_eq!(out, [2, 2, 0x5b, 0xa0, 0xfd, 0xe9]);
        assert!(path.needs_four_octets());
        let mut out = Vec::new();
        encode(&path, true, &mut out);
        assert_eq!(out, [2, 2, 0xfa, 0x56, 0xea, 0x00, 0, 0, 0xfd, 0xe9]);
        assert_eq!(decode(&out, true), Ok(path));
    }

    #[test]
    fn segments_longer_than_255_ases_are_split() {
        let path = AsPath::from_sequence((1..=300).collect());
        let mut out = Vec::new();
        encode(&path, true, &mut out);
        assert_eq!(out.len(), 2 + 255 * 4 + 2 + 45 * 4);
        let decoded = decode(&out, true).unwrap();
        assert_eq!(decoded.segments.len(), 2);
        assert_eq!(decoded.length(), 300);
    }

    #[test]
    fn malformed_segments_are_rejected() {
        assert!(decode(&[2], false).is_err(), "lone octet");
        assert!(decode(&[2, 0], false).is_err(), "zero length");
        assert!(decode(&[2, 2, 0, 1], false).is_err(), "overrun");
        assert!(decode(&[5, 1, 0, 1], false).is_err(), "unknown type");
        assert!(decode(&[3, 1, 0, 1], false).is_err(), "confederation");
        assert!(decode(&[2, 1, 0, 0], false).is_err(), "AS 0");
        assert_eq!(decode(&[], false), Ok(AsPath::default()));
    }

    #[test]
    fn as4_path_replaces_the_as_trans_tail_of_as_path() {
        let as_path = AsPath {
            segments: vec![seq(&[65001, 23456, 23456])],
        };
        let as4 = AsPath::from_sequence(vec![4_200_000_001, 4_200_000_002]);
        assert_eq!(
            merge_as4_path(as_path, as4).segments,
            vec![seq(&[65001, 4_200_000_001, 4_200_000_002])]
        );
    }

    #[test]
    fn as4_path_longer_than_as_path_is_ignored() {
        let as_path = AsPath::from_sequence(vec![65001]);
        let as4 = AsPath::from_sequence(vec![4_200_000_001, 4_200_000_002]);
        assert_eq!(merge_as4_path(as_path.clone(), as4), as_path);
    }

    #[test]
    fn merge_keeps_a_leading_set_whole() {
        let as_path = AsPath {
            segments: vec![set(&[1, 2]), seq(&[23456])],
        };
        let as4 = AsPath::from_sequence(vec![4_200_000_001]);
        assert_eq!(
            merge_as4_path(as_path, as4).segments,
            vec![set(&[1, 2]), seq(&[4_200_000_001])]
        );
    }
}
