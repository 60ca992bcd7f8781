"""Common Crawl: download WET files, read records, filter, identify language, dedup, extract a corpus."""
