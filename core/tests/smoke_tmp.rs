use keyval_core::sim::{run, FaultProfile, RunConfig};

#[test]
fn smoke() {
    for (profile, nodes) in [
        (FaultProfile::None, 3),
        (FaultProfile::Mixed, 3),
        (FaultProfile::Mixed, 5),
    ] {
        let mut fails = 0;
        for seed in 0..400 {
            let mut c = RunConfig::new(nodes, seed);
            c.profile = profile;
            let r = run(&c);
            if !r.is_ok() {
                fails += 1;
                if fails < 3 {
                    println!("{}", r.failure_text());
                }
            }
            if seed < 2 {
                println!(
                    "{profile:?} seed {seed}: events={} msgs={} end={} ok={} unk={} maxterm={}",
                    r.events,
                    r.messages,
                    r.end_time_us,
                    r.ops_completed,
                    r.ops_indeterminate,
                    r.max_term
                );
            }
        }
        println!("{profile:?} {nodes}: {fails} failures");
    }
}
