//! gocd-dind
