"""The stream KV benchmark: vocabulary, program generator, roles and sanity report."""
