use super::*;

fn rfc_initial() -> Vec<u8> {
    let hex: String = include_str!("testdata/rfc9001_a2_client_initial.hex")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn rfc9001_appendix_a_keys() {
    // The key, iv and hp of A.1 for DCID 8394c8f03e515708, checked through
    // the header protection mask of A.2 (mask 437b9aec36 for its sample).
    let keys = InitialKeys::client(&[0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08]).unwrap();
    let sample = [
        0xd1, 0xb1, 0xc9, 0x8d, 0xd7, 0x68, 0x9f, 0xb8, 0xec, 0x11, 0xd2, 0x42, 0xb1, 0x23, 0xdc, 0x9b,
    ];
    assert_eq!(keys.hp.new_mask(&sample).unwrap(), [0x43, 0x7b, 0x9a, 0xec, 0x36]);
    assert_eq!(
        keys.iv,
        [0xfa, 0x04, 0x4b, 0x2f, 0x42, 0xa3, 0xfd, 0x3b, 0x46, 0xfb, 0x25, 0x5c]
    );
}

#[test]
fn rfc9001_appendix_a_client_initial_names_example_com() {
    let packet = rfc_initial();
    assert_eq!(packet.len(), 1200);
    let step = initial_server_name(&packet).unwrap();
    assert_eq!(
        step,
        Step::Done(Some(ServerName {
            name: "example.com".into(),
            outer: false,
        }))
    );
    assert_eq!(name_of(&step).as_deref(), Some("example.com"));
}

#[test]
fn tampering_and_other_packets_are_refused() {
    let mut packet = rfc_initial();
    packet[600] ^= 1;
    assert_eq!(initial_server_name(&packet), Err(QuicError::Decrypt));
    let mut v2 = rfc_initial();
    v2[4] = 2;
    assert_eq!(initial_server_name(&v2), Err(QuicError::Version(2)));
    assert_eq!(initial_server_name(&[0x40, 1, 2, 3]), Err(QuicError::NotQuic));
    assert_eq!(initial_server_name(&[]), Err(QuicError::NotQuic));
    let mut handshake = rfc_initial();
    handshake[0] = 0xe0;
    assert_eq!(initial_server_name(&handshake), Err(QuicError::NotInitial));
    let cut = &rfc_initial()[..600];
    assert!(matches!(initial_server_name(cut), Err(QuicError::Malformed(_))));
}

#[test]
fn trailing_bytes_after_the_initial_are_ignored() {
    let mut packet = rfc_initial();
    packet.extend_from_slice(&[0; 40]);
    assert_eq!(
        name_of(&initial_server_name(&packet).unwrap()).as_deref(),
        Some("example.com")
    );
}

/// A ClientHello naming `name`, as CRYPTO data.
fn client_hello(name: &[u8]) -> Vec<u8> {
    let mut entry = vec![0, 0, name.len() as u8];
    entry.extend_from_slice(name);
    let mut sni = vec![0, 0, 0, entry.len() as u8 + 2, 0, entry.len() as u8];
    sni.extend_from_slice(&entry);
    let mut body = vec![3, 3];
    body.extend_from_slice(&[0x11; 32]);
    body.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0]);
    body.extend_from_slice(&(sni.len() as u16).to_be_bytes());
    body.extend_from_slice(&sni);
    let mut hs = vec![1, 0, 0, body.len() as u8];
    hs.extend_from_slice(&body);
    hs
}

fn crypto_frame(offset: u8, data: &[u8]) -> Vec<u8> {
    let mut f = vec![0x06, offset, 0x40 | (data.len() >> 8) as u8, data.len() as u8];
    f.extend_from_slice(data);
    f
}

#[test]
fn crypto_frames_out_of_order_across_packets() {
    let hs = client_hello(b"split.example");
    let (a, b) = hs.split_at(40);
    let mut q = QuicHello::new();
    // The second half first (a lost first packet, retransmitted later),
    // with an ACK and padding around it.
    let mut later = vec![0x01, 0x02, 0x05, 0x00, 0x00, 0x00];
    later.extend(crypto_frame(40, b));
    later.extend_from_slice(&[0; 16]);
    assert_eq!(q.push_frames(&later), Ok(Step::NeedMore));
    assert_eq!(
        q.push_frames(&crypto_frame(0, a)),
        Ok(Step::Done(Some(ServerName {
            name: "split.example".into(),
            outer: false,
        })))
    );
    // A frame type an Initial cannot carry.
    assert!(matches!(
        QuicHello::new().push_frames(&[0x08]),
        Err(QuicError::Malformed(_))
    ));
}
