"""The top layer: the `lionsearch` command line and the whole-method pipeline (search, funnel,
simplification) over the packages below it (`dsl`, `proxy_tasks`, `search`, `selection`,
`simplify`), none of which imports from here."""
