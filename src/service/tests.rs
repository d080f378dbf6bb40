//! The service's own machinery: settling background work, readiness.

use std::sync::atomic::{AtomicBool, Ordering};

use super::*;
use crate::runtime::memory::{MemoryProvider, MemoryRuntime};

fn service() -> Arc<Service> {
    let clock = Clock::default();
    let runtimes = Arc::new(MemoryProvider::new(MemoryRuntime::new(clock.clone())));
    // Nothing here calls GoCD: no bridge needs to listen.
    Service::new(runtimes, ProcessorClient::new("http://127.0.0.1:9", "t"), clock, ServiceOptions::default())
}

/// A resolved cluster on its own in-memory engine, known to `service` as GoCD's
/// requests would leave it.
fn known(service: &Service, host: &str) -> Arc<MemoryRuntime> {
    let runtime = MemoryRuntime::new(Clock::default());
    let props = crate::protocol::Properties::from_pairs(&[("runtime", "memory"), ("docker_host", host)]);
    let settings = ClusterSettings::parse(&props, true).unwrap();
    let id = ClusterId(host.to_owned());
    let cluster =
        Cluster { owner: Ownership::new("server", id.clone()), id: id.clone(), runtime: runtime.clone(), settings };
    service.clusters.lock().unwrap().insert(id, cluster);
    runtime
}

/// Paused time: the clock only moves when every task waits, so the figures are exact.
#[tokio::test(start_paused = true)]
async fn readiness_asks_every_engine_at_once_and_none_for_longer_than_the_timeout() {
    let service = service();
    let stalled = [known(&service, "tcp://a:1"), known(&service, "tcp://b:1")];
    known(&service, "tcp://c:1");
    known(&service, "tcp://d:1").set_unreachable(true);
    for engine in &stalled {
        engine.set_answering(false);
    }
    let started = tokio::time::Instant::now();
    let (mut problems, asked) = service.readiness().await;
    assert_eq!(started.elapsed(), READY_PROBE_TIMEOUT, "the engines were not asked at once");
    assert_eq!(asked, 4);
    problems.sort();
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(problems[0].starts_with("in-memory test runtime at tcp://a:1: no answer within 2000 ms"), "{problems:?}");
    assert!(problems[1].starts_with("in-memory test runtime at tcp://b:1: no answer"), "{problems:?}");
    assert!(problems[2].contains("tcp://d:1: cannot reach"), "{problems:?}");
}

#[tokio::test(start_paused = true)]
async fn readiness_with_every_engine_answering_takes_no_time() {
    let service = service();
    known(&service, "tcp://a:1");
    let started = tokio::time::Instant::now();
    assert_eq!(service.readiness().await, (Vec::new(), 1));
    assert_eq!(started.elapsed(), Duration::ZERO);
}

#[tokio::test]
async fn settle_waits_for_background_work_and_the_work_it_starts() {
    let service = service();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let done = Arc::new(AtomicBool::new(false));
    let (inner, flag) = (service.clone(), done.clone());
    service.tasks.spawn(async move {
        released.await.unwrap();
        inner.tasks.spawn(async move { flag.store(true, Ordering::SeqCst) });
    });
    let settling = tokio::spawn({
        let service = service.clone();
        async move { service.settle().await }
    });
    tokio::task::yield_now().await;
    assert!(!settling.is_finished(), "settled while a task still waits");
    release.send(()).unwrap();
    settling.await.unwrap();
    assert!(done.load(Ordering::SeqCst), "settled before the task's own task ran");
    // The tracker is open again: later work is tracked and waited for too.
    let again = Arc::new(AtomicBool::new(false));
    let flag = again.clone();
    service.tasks.spawn(async move { flag.store(true, Ordering::SeqCst) });
    service.settle().await;
    assert!(again.load(Ordering::SeqCst));
    service.drain(Duration::from_secs(60)).await;
    service.settle().await;
    assert!(service.tasks.is_closed(), "settle reopened a drained tracker");
}
