use std::collections::BTreeSet;

use super::*;
use crate::runtime::PodEvent;

fn t(seconds: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
}

fn job(job_id: i64) -> JobIdentifier {
    JobIdentifier { job_id, pipeline_name: "p".into(), job_name: "j".into(), ..JobIdentifier::default() }
}

fn story(pod: &str, cluster: &str, job_id: i64, at: SystemTime) -> Story {
    Story {
        pod: pod.into(),
        cluster: ClusterId(cluster.into()),
        place: "docker at the local engine".into(),
        runtime: "docker",
        job: job(job_id),
        timeline: vec![(Stage::Created, at)],
        adopted: false,
        failure: None,
        removal: None,
        last_look: None,
        warm: None,
    }
}

#[test]
fn each_stage_is_recorded_once_and_timed_from_the_creation_decision() {
    let mut journal = Journal::default();
    journal.created(story("p1", "c1", 1, t(100)));
    assert_eq!(journal.reached("p1", Stage::DockerdReady, t(101)), Some(Duration::from_secs(1)));
    assert_eq!(journal.reached("p1", Stage::AgentStarted, t(103)), Some(Duration::from_secs(3)));
    assert_eq!(journal.reached("p1", Stage::AgentStarted, t(110)), None, "a second time is not news");
    assert_eq!(journal.reached("p1", Stage::Registered, t(130)), Some(Duration::from_secs(30)));
    assert_eq!(journal.reached("unknown", Stage::Registered, t(130)), None);
    let stages: Vec<Stage> = journal.story("p1").unwrap().timeline.iter().map(|(s, _)| *s).collect();
    assert_eq!(stages, [Stage::Created, Stage::DockerdReady, Stage::AgentStarted, Stage::Registered]);
    assert!(journal.story("p1").unwrap().registered());

    let mut found = story("p2", "c1", 2, t(50));
    found.adopted = true;
    journal.adopt(found);
    assert_eq!(journal.reached("p2", Stage::Registered, t(130)), None, "an adopted pod is not timed");
    assert!(journal.story("p2").unwrap().registered(), "but its stage is recorded");
    journal.adopt(story("p1", "c1", 1, t(999)));
    assert_eq!(journal.story("p1").unwrap().at(Stage::Created), Some(t(100)), "adopting keeps a known story");
}

#[test]
fn a_gone_pod_becomes_a_post_mortem_of_its_job() {
    let mut journal = Journal::default();
    journal.created(story("p1", "c1", 7, t(0)));
    let failure = StartFailure { reason: FailureReason::ImagePull, message: "cannot pull image a:1".into() };
    let look = PodDetails { dind_log_tail: "level=error msg=boom\n".into(), ..PodDetails::default() };
    journal.failed("p1", failure.clone(), look, t(5));
    assert!(journal.story("p1").is_none());
    let dead = journal.postmortem_of_job(7).unwrap();
    assert_eq!(dead.failure.as_ref(), Some(&failure));
    assert_eq!(dead.at(Stage::Removed), Some(t(5)));
    assert_eq!(dead.removal.as_deref(), Some("its start failed"));
    assert!(dead.last_look.as_ref().unwrap().dind_log_tail.contains("boom"));

    // The job's next pod, completed and removed: the latest post-mortem wins.
    journal.created(story("p2", "c1", 7, t(10)));
    journal.removed("p2", "job completed", None, t(20));
    assert_eq!(journal.postmortem_of_job(7).unwrap().pod, "p2");
    assert_eq!(journal.postmortems().map(|s| s.pod.as_str()).collect::<Vec<_>>(), ["p2", "p1"]);
    journal.removed("p2", "again", None, t(30));
    assert_eq!(journal.postmortems().count(), 2, "a pod is buried once");
}

#[test]
fn post_mortems_stay_bounded_in_number_and_size() {
    let mut journal = Journal::default();
    let long_log = (0..5000).map(|i| format!("line {i}")).collect::<Vec<_>>().join("\n") + "\n";
    let events: Vec<PodEvent> = (0..100)
        .map(|i| PodEvent { at: Some(t(i)), warning: false, reason: format!("r{i}"), message: String::new(), count: 1 })
        .collect();
    for i in 0..POSTMORTEMS_KEPT + 20 {
        let pod = format!("p{i}");
        journal.created(story(&pod, "c1", i64::try_from(i).unwrap(), t(0)));
        let look = PodDetails { dind_log_tail: long_log.clone(), events: events.clone(), ..PodDetails::default() };
        journal.removed(&pod, "job completed", Some(look), t(1));
    }
    assert_eq!(journal.postmortems().count(), POSTMORTEMS_KEPT);
    assert!(journal.postmortem_of_job(0).is_none(), "the oldest went first");
    let look = journal.postmortem_of_job(i64::try_from(POSTMORTEMS_KEPT).unwrap()).unwrap().last_look.clone().unwrap();
    assert!(look.dind_log_tail.len() <= LOG_KEPT);
    assert!(look.dind_log_tail.starts_with("line ") && look.dind_log_tail.ends_with("line 4999\n"), "whole last lines");
    assert_eq!(look.events.len(), EVENTS_KEPT);
    assert_eq!(look.events.last().unwrap().reason, "r99", "the newest events");
}

#[test]
fn a_hold_keeps_its_start_while_its_reason_stays() {
    let mut journal = Journal::default();
    let c1 = Some(ClusterId("c1".into()));
    let full = HoldReason::Limit(Limit::Pending, "2 agent pods are waiting to register".into());
    journal.hold(1, c1.clone(), full.clone(), t(10));
    journal.hold(1, c1.clone(), full.clone(), t(20));
    let hold = journal.hold_of(1).unwrap();
    assert_eq!((hold.since, hold.last), (t(10), t(20)));
    journal.hold(1, c1.clone(), HoldReason::Limit(Limit::Total, "50 agent pods exist".into()), t(30));
    assert_eq!(journal.hold_of(1).unwrap().since, t(30), "another reason starts anew");
    journal.created(story("p1", "c1", 1, t(40)));
    assert!(journal.hold_of(1).is_none(), "a pod was created for it");
    for job_id in 0..i64::try_from(HOLDS_KEPT).unwrap() + 5 {
        journal.hold(job_id, c1.clone(), full.clone(), t(u64::try_from(job_id).unwrap()));
    }
    assert_eq!(journal.holds.len(), HOLDS_KEPT);
    assert!(journal.hold_of(0).is_none(), "the longest-unasked went first");
}

#[test]
fn clusters_no_profile_names_leave_post_mortems_and_no_holds() {
    let mut journal = Journal::default();
    journal.created(story("p1", "c1", 1, t(0)));
    journal.created(story("p2", "c2", 2, t(0)));
    journal.hold(3, Some(ClusterId("c1".into())), HoldReason::Postponed("engine down".into()), t(1));
    journal.hold(4, None, HoldReason::Refused("invalid profile".into()), t(1));
    journal.engine_answered(&ClusterId("c1".into()), Some("refused".into()), t(1));
    journal.engine_answered(&ClusterId("c2".into()), None, t(1));
    journal.retain_clusters(&BTreeSet::from([ClusterId("c2".into())]), t(2));
    assert!(journal.story("p1").is_none() && journal.story("p2").is_some());
    assert_eq!(
        journal.postmortem_of_job(1).unwrap().removal.as_deref(),
        Some("no cluster profile names its cluster any more")
    );
    assert!(journal.hold_of(3).is_none());
    assert!(journal.hold_of(4).is_some(), "a refusal names no cluster");
    assert!(journal.engine(&ClusterId("c1".into())).is_none());
    assert!(journal.engine(&ClusterId("c2".into())).unwrap().up);
}

#[test]
fn a_claimed_warm_pods_story_is_the_jobs_and_keeps_what_it_could_not_pre_pull() {
    let mut journal = Journal::default();
    let mut warm = story("w1", "c1", 0, t(100));
    warm.warm = Some(WarmStory { made: t(100), claimed: None, pull_failures: Vec::new() });
    journal.created(warm);
    let failures = vec!["busybox:1.36: docker pull exited with 1: manifest unknown".to_owned()];
    journal.claimed("w1", job(7), t(160), failures.clone());
    let claimed = journal.story("w1").unwrap();
    assert_eq!(claimed.job.job_id, 7);
    assert_eq!(claimed.timeline, [(Stage::Created, t(160))], "timed from the claim");
    let expected = WarmStory { made: t(100), claimed: Some(t(160)), pull_failures: failures.clone() };
    assert_eq!(claimed.warm.as_ref(), Some(&expected));
    journal.removed("w1", "job completed", None, t(200));
    let dead = journal.postmortem_of_job(7).expect("a post-mortem");
    assert_eq!(dead.warm.as_ref().map(|w| w.pull_failures.clone()), Some(failures), "the post-mortem keeps them");
}
