#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| flowtop_testkit::fuzzing::quic_initial(data));
