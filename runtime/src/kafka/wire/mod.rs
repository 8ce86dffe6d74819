//! Wire codecs: what the kafka-protocol crate lacks, encoded with its public traits.
