use keyval_core::sim::{run, FaultProfile, RunConfig};
#[test]
fn dbg() {
    let mut c = RunConfig::new(3, 7);
    c.profile = FaultProfile::None;
    c.record_trace = true;
    let r = run(&c);
    for e in r
        .trace
        .iter()
        .filter(|e| {
            let s = e.render();
            (s.contains("n2") || s.contains("commit")) && !e.is_heartbeat()
        })
        .rev()
        .take(60)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
    {
        println!("{}", e.render());
    }
    println!("{}", r.failure_text());
}
