{# grain: one row per billable event: provider and request_id when there is one, else event_id #}

with

snapshots as (

    select * from {{ ref('stg_usage__event_snapshots') }}

),

ranked as (

    select
        *,
        row_number() over (
            partition by billable_key
            order by {{ latest_snapshot_first() }}
        ) as snapshot_rank
    from snapshots

),

deduplicated as (

    select * from ranked
    where snapshot_rank = 1

)

select * from deduplicated
