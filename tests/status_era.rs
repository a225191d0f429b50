//! `status()` names the kernel's CID era and the rseq registration (its length, and whether
//! Linux 7.1+ runs it in the optimized V2 mode). CI also runs this under
//! `GLIBC_TUNABLES=glibc.pthread.rseq=0`, where percid registers its own area.

use percid::index::era::CidEra;
use percid::rseq::registration::{self, Owner, own_layout};

#[test]
fn status_names_the_era_and_the_registration() {
    let st = percid::status();
    assert_eq!(st.cid_era, CidEra::running());
    assert!(st.cid_era.is_some(), "{:?}", st.kernel_release);
    let text = st.to_string();
    assert!(text.contains("kernel CID era:"), "{text}");
    assert!(text.contains("rseq V2 on 7.1+:"), "{text}");
    match st.owner {
        Owner::Percid => {
            let decided = own_layout(st.kernel_feature_size, st.kernel_align);
            let len = st.registration_len.expect("own registration has a length");
            assert_eq!(Some(len), registration::registered_len());
            assert!(len == decided.len || len == 32, "{len} vs {decided:?}");
            assert_eq!(st.rseq_v2, Some(len > 32 && len >= st.kernel_feature_size));
            assert!(
                text.contains(&format!("registered length:   {len} bytes")),
                "{text}"
            );
        }
        Owner::Libc => {
            assert_eq!(st.registration_len, None);
            if matches!(st.glibc_rseq_size, Some(20 | 32)) {
                assert_eq!(st.rseq_v2, Some(false));
            }
        }
        Owner::None(_) => {
            assert_eq!(st.registration_len, None);
            assert_eq!(st.rseq_v2, None);
        }
    }
}
