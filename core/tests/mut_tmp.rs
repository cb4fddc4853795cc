use keyval_core::mutation::Mutation;
use keyval_core::sim::{run, FaultProfile, RunConfig};
#[test]
fn muts() {
    for m in Mutation::ALL {
        for (profile, nodes) in [
            (FaultProfile::Mixed, 5),
            (FaultProfile::CrashHeavy, 5),
            (FaultProfile::CrashHeavy, 3),
        ] {
            let mut first = None;
            let mut count = 0;
            for seed in 0..2000 {
                let mut c = RunConfig::new(nodes, seed);
                c.profile = profile;
                c.mutation = Some(m);
                let r = run(&c);
                if !r.is_ok() {
                    count += 1;
                    if first.is_none() {
                        first = Some((seed, r.violations[0].property.clone()));
                    }
                }
            }
            println!("{m:?} {profile:?} {nodes}: {count}/2000 caught, first {first:?}");
        }
    }
}
