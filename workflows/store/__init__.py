"""The store flows: a pickup at the counter or the curb, and the transfer that brings its stock to the store."""
