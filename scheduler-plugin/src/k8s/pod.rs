//! Which pods are batch, and what they ask for.

use std::collections::HashMap;

use colo_policy::scoring::Resources;

use super::quantity::Quantity;
use super::wire::{Container, Pod};
use crate::config::BatchPodSelector;

/// A container's amount of `resource`: its request, or its limit when it sets no request (the
/// API server defaults requests to limits, and extended resources must have them equal).
fn container_amount(c: &Container, resource: &str) -> Option<Quantity> {
    let r = c.resources.as_ref()?;
    let get =
        |m: &Option<HashMap<String, Quantity>>| m.as_ref().and_then(|m| m.get(resource)).copied();
    get(&r.requests).or_else(|| get(&r.limits))
}

fn containers(pod: &Pod) -> impl Iterator<Item = &Container> {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter().flatten().flatten())
}

fn init_containers(pod: &Pod) -> impl Iterator<Item = &Container> {
    pod.spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten().flatten())
}

/// True when any container (or init container) asks for `resource`.
fn uses(pod: &Pod, resource: &str) -> bool {
    containers(pod)
        .chain(init_containers(pod))
        .any(|c| container_amount(c, resource).is_some())
}

/// True when `selector` marks `pod` as batch.
#[must_use]
pub fn is_batch(pod: &Pod, selector: &BatchPodSelector) -> bool {
    let spec_class = pod
        .spec
        .as_ref()
        .and_then(|s| s.priority_class_name.as_deref());
    if spec_class.is_some_and(|c| selector.priority_classes.iter().any(|p| p == c)) {
        return true;
    }
    let labels = pod.metadata.as_ref().and_then(|m| m.labels.as_ref());
    if let Some(labels) = labels {
        let hit = selector
            .labels
            .iter()
            .any(|(k, v)| labels.get(k).is_some_and(|have| v.is_empty() || have == v));
        if hit {
            return true;
        }
    }
    uses(pod, &selector.cpu_resource) || uses(pod, &selector.memory_resource)
}

/// The pod's effective amount of one resource, as the Kubernetes scheduler computes it: the sum
/// over containers, at least the largest init container, plus the pod overhead. `to_units`
/// converts a quantity to the unit wanted.
fn effective(pod: &Pod, resource: &str, to_units: fn(Quantity) -> u64) -> Option<u64> {
    let mut seen = false;
    let mut sum: u64 = 0;
    for c in containers(pod) {
        if let Some(q) = container_amount(c, resource) {
            seen = true;
            sum = sum.saturating_add(to_units(q));
        }
    }
    let mut init_max: u64 = 0;
    for c in init_containers(pod) {
        if let Some(q) = container_amount(c, resource) {
            seen = true;
            init_max = init_max.max(to_units(q));
        }
    }
    let overhead = pod
        .spec
        .as_ref()
        .and_then(|s| s.overhead.as_ref())
        .and_then(|o| o.get(resource))
        .map(|q| to_units(*q));
    if !seen {
        return None;
    }
    Some(sum.max(init_max).saturating_add(overhead.unwrap_or(0)))
}

/// What a batch pod asks of a node's batch budget: the batch extended resources when it uses
/// them (batch CPU is in millicores, so its plain value is millicores), else its ordinary `cpu`
/// and `memory` requests.
#[must_use]
pub fn batch_request(pod: &Pod, selector: &BatchPodSelector) -> Resources {
    let cpu = effective(pod, &selector.cpu_resource, Quantity::value)
        .or_else(|| effective(pod, "cpu", Quantity::milli_value))
        .unwrap_or(0);
    let memory = effective(pod, &selector.memory_resource, Quantity::value)
        .or_else(|| effective(pod, "memory", Quantity::value))
        .unwrap_or(0);
    Resources::new(cpu, memory)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: &str) -> Pod {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn selects_batch_pods_by_class_label_or_resource() {
        let sel = BatchPodSelector {
            priority_classes: vec!["batch-low".into()],
            labels: vec![
                ("team".into(), String::new()),
                ("colo.io/qos".into(), "batch".into()),
            ],
            ..BatchPodSelector::default()
        };
        assert!(is_batch(
            &pod(r#"{"spec":{"priorityClassName":"batch-low"}}"#),
            &sel
        ));
        assert!(!is_batch(
            &pod(r#"{"spec":{"priorityClassName":"Batch-Low"}}"#),
            &sel
        ));
        assert!(is_batch(
            &pod(r#"{"metadata":{"labels":{"team":"x"}}}"#),
            &sel
        ));
        assert!(is_batch(
            &pod(r#"{"metadata":{"labels":{"colo.io/qos":"batch"}}}"#),
            &sel
        ));
        assert!(!is_batch(
            &pod(r#"{"metadata":{"labels":{"colo.io/qos":"online"}}}"#),
            &sel
        ));
        assert!(!is_batch(
            &pod(r#"{"metadata":{"labels":{"Team":"x"}}}"#),
            &sel
        ));
        assert!(is_batch(
            &pod(
                r#"{"spec":{"containers":[{"resources":{"limits":{"colo.io/batch-cpu":"500"}}}]}}"#
            ),
            &sel
        ));
        assert!(is_batch(
            &pod(
                r#"{"spec":{"initContainers":[{"resources":{"requests":{"colo.io/batch-memory":"1Gi"}}}]}}"#
            ),
            &sel
        ));
        assert!(!is_batch(
            &pod(r#"{"spec":{"containers":[{"resources":{"requests":{"cpu":"1"}}}, null]}}"#),
            &sel
        ));
        assert!(!is_batch(&Pod::default(), &sel));
    }

    #[test]
    fn request_sums_containers_and_honours_init_and_overhead() {
        let sel = BatchPodSelector::default();
        let p = pod(r#"{"spec":{
              "containers":[
                {"resources":{"requests":{"colo.io/batch-cpu":"1500","colo.io/batch-memory":"1Gi"}}},
                {"resources":{"limits":{"colo.io/batch-cpu":"500","colo.io/batch-memory":"512Mi"}}}],
              "initContainers":[{"resources":{"requests":{"colo.io/batch-cpu":"3000"}}}],
              "overhead":{"colo.io/batch-cpu":"100"}}}"#);
        assert_eq!(batch_request(&p, &sel), Resources::new(3_100, 3 << 29));
        let plain = pod(
            r#"{"spec":{"containers":[{"resources":{"requests":{"cpu":"250m","memory":"64Mi"}}},
                                     {"resources":{"requests":{"cpu":"0.5"}}}]}}"#,
        );
        assert_eq!(batch_request(&plain, &sel), Resources::new(750, 64 << 20));
        assert_eq!(batch_request(&Pod::default(), &sel), Resources::ZERO);
    }
}
