#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| flowtop::fuzzing::filter(data));
