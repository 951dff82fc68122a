//! # tollgate-metering — usage events from Kafka into ClickHouse
//!
//! Not built yet: this crate is the home of the metering consumer (binary `tollgate-metering`) that the
//! usage-pipeline work adds — consumer group → decode (dead-letter what cannot be decoded) → batch by rows,
//! bytes and age → insert into ClickHouse → commit offsets only after ClickHouse accepted, with exactly-once
//! effect keyed by `event_id` and partition offsets. Until then the gateway meters into its embedded store
//! (see `tollgate_gateway::events::embedded`) and this crate holds no code.
