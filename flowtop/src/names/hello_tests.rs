use super::*;

fn u16be(n: usize) -> [u8; 2] {
    (n as u16).to_be_bytes()
}

fn ext(kind: u16, data: &[u8]) -> Vec<u8> {
    let mut v = kind.to_be_bytes().to_vec();
    v.extend_from_slice(&u16be(data.len()));
    v.extend_from_slice(data);
    v
}

fn sni_ext(name: &[u8]) -> Vec<u8> {
    let mut entry = vec![0];
    entry.extend_from_slice(&u16be(name.len()));
    entry.extend_from_slice(name);
    let mut list = u16be(entry.len()).to_vec();
    list.extend_from_slice(&entry);
    ext(0, &list)
}

/// A ClientHello handshake message with these extensions.
fn hello(exts: &[Vec<u8>]) -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend_from_slice(&[0x11; 32]);
    body.push(32);
    body.extend_from_slice(&[0x22; 32]);
    body.extend_from_slice(&[0, 4, 0x13, 0x01, 0x13, 0x02]);
    body.extend_from_slice(&[1, 0]);
    let all: Vec<u8> = exts.concat();
    body.extend_from_slice(&u16be(all.len()));
    body.extend_from_slice(&all);
    let mut hs = vec![1, 0];
    hs.extend_from_slice(&u16be(body.len()));
    hs.extend_from_slice(&body);
    hs
}

/// The handshake message in TLS records of at most `max` bytes each.
fn records(hs: &[u8], max: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in hs.chunks(max) {
        out.extend_from_slice(&[22, 3, 1]);
        out.extend_from_slice(&u16be(chunk.len()));
        out.extend_from_slice(chunk);
    }
    out
}

fn padding(n: usize) -> Vec<u8> {
    ext(21, &vec![0; n])
}

fn found(name: &str, outer: bool) -> HelloStep {
    Ok(Step::Done(Some(ServerName {
        name: name.into(),
        outer,
    })))
}

#[test]
fn sni_in_the_first_segment() {
    let bytes = records(
        &hello(&[ext(10, &[0, 2, 0, 29]), sni_ext(b"api.example.com")]),
        16384,
    );
    let mut r = Reassembly::new();
    assert_eq!(r.push(&bytes), found("api.example.com", false));
}

#[test]
fn sni_past_the_first_segment_fed_segment_by_segment() {
    // A big key share first (post-quantum sized), SNI last, over two records.
    let hs = hello(&[ext(51, &vec![0x42; 1300]), padding(200), sni_ext(b"late.example")]);
    let bytes = records(&hs, 1000);
    let mut r = Reassembly::new();
    let segments: Vec<&[u8]> = bytes.chunks(536).collect();
    for (i, seg) in segments.iter().enumerate() {
        let step = r.push(seg);
        if i + 1 < segments.len() {
            assert_eq!(step, Ok(Step::NeedMore), "segment {i}");
        } else {
            assert_eq!(step, found("late.example", false));
        }
    }
    // Byte by byte too.
    let mut r = Reassembly::new();
    let mut last = Ok(Step::NeedMore);
    for b in &bytes {
        last = r.push(std::slice::from_ref(b));
    }
    assert_eq!(last, found("late.example", false));
}

#[test]
fn ech_outer_name_is_marked() {
    let ech = ext(EXT_ECH, &[0, 0, 1, 0, 1, 7, 0, 0, 0, 0]);
    let bytes = records(&hello(&[sni_ext(b"public.example"), ech]), 16384);
    assert_eq!(parse_records(&bytes, false), found("public.example", true));
    // Inner type (1): not the outer hello's marker.
    let inner = ext(EXT_ECH, &[1]);
    let bytes = records(&hello(&[inner, sni_ext(b"x.example")]), 16384);
    assert_eq!(parse_records(&bytes, false), found("x.example", false));
}

#[test]
fn no_sni_and_other_protocols() {
    let bytes = records(&hello(&[padding(10)]), 16384);
    assert_eq!(parse_records(&bytes, false), Ok(Step::Done(None)));
    assert_eq!(
        parse_records(b"GET / HTTP/1.1\r\n", false),
        Err(HelloError::NotTls)
    );
    assert_eq!(parse_records(&[22, 4], false), Err(HelloError::NotTls));
    assert_eq!(parse_records(&[22], false), Ok(Step::NeedMore));
    // A ServerHello (type 2).
    let mut sh = hello(&[]);
    sh[0] = 2;
    assert_eq!(
        parse_records(&records(&sh, 100), false),
        Err(HelloError::NotClientHello)
    );
}

/// Feeds `hs` as records in 1400-byte segments until the reassembly
/// answers (a name, none, or an error); returns it and its last answer.
fn push_until_answered(hs: &[u8]) -> (Reassembly, HelloStep) {
    let mut r = Reassembly::new();
    let mut last = Ok(Step::NeedMore);
    for seg in records(hs, 16384).chunks(1400) {
        last = r.push(seg);
        if last != Ok(Step::NeedMore) {
            break;
        }
    }
    (r, last)
}

#[test]
fn the_bound_ends_the_wait() {
    // The hello claims more than the bound; the name comes after it.
    let hs = hello(&[padding(5000), sni_ext(b"far.example")]);
    let (r, last) = push_until_answered(&hs);
    assert_eq!(last, Err(HelloError::TooLong));
    assert_eq!(r.len(), MAX_HELLO);
    // A name before the cut still counts.
    let hs = hello(&[sni_ext(b"near.example"), padding(5000)]);
    let (_, last) = push_until_answered(&hs);
    assert_eq!(last, found("near.example", false));
}

#[test]
fn malformed_lengths_and_hostile_names() {
    // Extensions length one more than there is, in a complete message.
    let mut bad = hello(&[sni_ext(b"a.example")]);
    let ext_len_at = 4 + 2 + 32 + 33 + 6 + 2;
    bad[ext_len_at + 1] += 1;
    assert!(matches!(
        parse_records(&records(&bad, 16384), false),
        Err(HelloError::Malformed(_))
    ));
    let evil = hello(&[sni_ext(b"\x1b]0;pwn\x07.example")]);
    let Ok(Step::Done(Some(n))) = parse_records(&records(&evil, 16384), false) else {
        panic!()
    };
    assert_eq!(n.name.as_bytes(), b"\x1b]0;pwn\x07.example");
    assert!(!crate::output::safe::terminal_safe(&n.name)
        .chars()
        .any(char::is_control));
    let long = hello(&[sni_ext(&[b'a'; 300])]);
    assert_eq!(parse_records(&records(&long, 16384), false), Ok(Step::Done(None)));
    assert!(matches!(
        parse_records(&[22, 3, 1, 0, 0], false),
        Err(HelloError::Malformed(_))
    ));
}
