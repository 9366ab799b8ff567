//! A running guest's usage (CPU time, RSS, vCPUs) in `DomainInfo`: read fresh while
//! the actor holds the guest, the last value kept while a job has taken the guest out
//! of the actor, and none once the domain is shut off.

use std::sync::Arc;
use std::time::Duration;

use vireo_actors::{HelperTask, Host, HostConfig};
use vireo_drivers::fake::FakeHypervisor;

const XML: &str = "<domain type='test'><name>u1</name><memory unit='MiB'>64</memory><os><type>hvm</type></os></domain>";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_is_kept_while_a_job_holds_the_guest() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeHypervisor::new();
    let mut cfg = HostConfig::new(dir.path());
    cfg.test_hypervisor = Some(Arc::new(fake.clone()));
    let host = Host::start(cfg).await.unwrap();
    let conn = host.open("test:///default").await.unwrap();
    let dom = conn.define_domain(XML).await.unwrap();
    assert_eq!(dom.info().await.unwrap().usage, None, "shut off: no usage");

    dom.start(false).await.unwrap();
    let first = dom
        .info()
        .await
        .unwrap()
        .usage
        .expect("a running guest's usage");
    assert_eq!(first.rss_kib, 1024);
    let reads = fake.usage_reads();
    assert_eq!(first.cpu_user_ns, reads);

    // A job takes the guest out of the actor until `release` fires.
    let (release, wait) = tokio::sync::oneshot::channel::<()>();
    let d = dom.clone();
    let job = tokio::spawn(async move {
        d.run_helper(HelperTask::new("hold", async move {
            let _ = wait.await;
            Ok(String::new())
        }))
        .await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let during = dom.info().await.unwrap().usage;
    assert_eq!(
        during.as_ref(),
        Some(&first),
        "the last value while the job runs"
    );
    assert_eq!(fake.usage_reads(), reads, "no guest to read during the job");

    release.send(()).unwrap();
    job.await.unwrap().unwrap();
    let after = dom.info().await.unwrap().usage.unwrap();
    assert_eq!(
        after.cpu_user_ns,
        reads + 1,
        "read fresh once the guest is back"
    );

    dom.destroy(false).await.unwrap();
    assert_eq!(
        dom.info().await.unwrap().usage,
        None,
        "shut off again: no usage"
    );
    host.shutdown().await;
}
