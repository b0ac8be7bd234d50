#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| flowtop::fuzzing::ctnetlink_diff(data));
