//! Define → start → watch events → destroy, on the app's own tokio runtime.
use vireo_actors::{Delivery, Filter, Host, HostConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("vireo-example-{}", std::process::id()));
    let host = Host::start(HostConfig::new(&dir)).await?;
    let mut events = host.subscribe(Filter::all().name("demo"));
    let conn = host.open("test:///default").await?;

    let xml = "<domain type='test'><name>demo</name><memory unit='MiB'>128</memory>\
               <os><type>hvm</type></os></domain>";
    let dom = conn.define_domain(xml).await?;
    dom.start(false).await?;
    println!(
        "demo is {:?} with id {:?}",
        dom.info().await?.state.state,
        dom.id()
    );
    dom.destroy(false).await?;
    dom.undefine(0).await?;

    for _ in 0..4 {
        if let Some(Delivery::Event(e)) = events.recv().await
            && let Some(l) = e.event.kind.as_lifecycle()
        {
            println!(
                "#{} {} {:?} (detail {})",
                e.seq, e.event.object.name, l.event, l.detail
            );
        }
    }
    host.shutdown().await;
    std::fs::remove_dir_all(dir)?;
    Ok(())
}
