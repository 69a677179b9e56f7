{# grain: one row per quarantined source row, without its raw text #}

with

quarantined_rows as (

    select * from {{ ref('stg_usage__quarantined_rows') }}

),

final as (

    select
        quarantine_id,
        batch_id,
        replay_batch_id,
        source_file,
        line_number,
        source_format,
        reason,
        message,
        quarantined_at,
        replayed_at,
        dismissed_at,
        -- Open until a replay lands the row or an operator dismisses it.
        replayed_at is null and dismissed_at is null as is_open
    from quarantined_rows

)

select * from final
