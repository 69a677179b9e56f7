{#
    The order that puts the snapshot that counts first among the snapshots of one billable event.

    Streamed responses resend cumulative usage under one request id, and producers may deliver an
    event twice. The latest snapshot contains the total, whatever the arrival order. A snapshot
    without usage never replaces one with usage, so a late resend that lost its usage cannot turn
    a known cost into an unknown one. Producers often stamp every chunk of a stream with the
    request's start time, so among equal times the larger cumulative token count is the later
    snapshot. stg_usage__events and the incremental scope rank with this same order.
#}
{% macro latest_snapshot_first() -%}
    case when has_usage then 0 else 1 end,
    created_at desc,
    coalesce(input_tokens, 0) + coalesce(output_tokens, 0) desc,
    loaded_at desc,
    event_id desc
{%- endmacro %}
