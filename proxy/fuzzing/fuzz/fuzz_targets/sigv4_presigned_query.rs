#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzzing::sigv4_presigned_query(data));
