{#
    grain: one row per billable event that this build prices

    A full build (the first one, --full-refresh, or a warehouse without the previous build's
    price catalog) prices every event. An incremental build prices only the events that can have
    changed since the marts were built:
    - events whose latest snapshot was ingested within the lookback window (var lookback_days,
      measured on loaded_at, counted back from the newest loaded_at in the marts), so late events
      land in their day and late duplicates replace their billable event's row;
    - events that a price catalog change affects, whatever their age: the events of a changed or
      removed seed row's provider and model inside its effective window.
    previous_usage_date is the day the marts have the event under now, so fct_usage_daily also
    rebuilds a day that an event leaves.

    An incremental build finds its events among the snapshots, before deduplication, and ranks
    only their snapshots: deduplicating the whole history would cost as much as a full build. An
    event is in scope when any of its snapshots matches, which can only add events whose prices
    come out the same.
#}

-- depends_on: {{ ref('int_price_catalog_rows') }}
-- depends_on: {{ ref('stg_usage__event_snapshots') }}

{% set marts_schema = generate_schema_name('marts', none) -%}
{%- set events_mart = adapter.get_relation(this.database, marts_schema, 'fct_usage_events') -%}
{%- set applied_catalog = adapter.get_relation(this.database, this.schema, 'int_price_catalog_applied') -%}
{%- set is_incremental_scope = events_mart is not none
    and applied_catalog is not none
    and not flags.FULL_REFRESH -%}

with

{% if is_incremental_scope %}

snapshots as (

    select * from {{ ref('stg_usage__event_snapshots') }}

),

priced_events as (

    select billable_key, usage_date, loaded_at from {{ events_mart }}

),

catalog_now as (

    select * from {{ ref('int_price_catalog_rows') }}

),

catalog_before as (

    select * from {{ applied_catalog }}

),

lookback as (

    select
        coalesce(
            {{ dbt.dateadd('day', -1 * (var('lookback_days') | int), 'max(loaded_at)') }},
            cast('1970-01-01 00:00:00' as timestamp)
        ) as loaded_from
    from priced_events

),

changed_catalog_rows as (

    -- Added or changed rows, then removed or changed rows: both windows need new prices.
    select * from catalog_now
    where row_hash not in (select catalog_before.row_hash from catalog_before)

    union all

    select * from catalog_before
    where row_hash not in (select catalog_now.row_hash from catalog_now)

),

recently_ingested as (

    select snapshots.billable_key
    from snapshots
    cross join lookback
    where snapshots.loaded_at >= lookback.loaded_from

),

repriced as (

    select snapshots.billable_key
    from snapshots
    inner join changed_catalog_rows
        on
            snapshots.created_at >= changed_catalog_rows.effective_from
            and snapshots.created_at < changed_catalog_rows.effective_to
            and (
                changed_catalog_rows.price_kind = 'leaf_term'
                or (
                    changed_catalog_rows.price_kind = 'token_price'
                    and snapshots.price_provider_id = changed_catalog_rows.provider_key
                    and snapshots.catalog_model_id = changed_catalog_rows.model_key
                )
                or (
                    changed_catalog_rows.price_kind = 'unit_price'
                    and snapshots.provider = changed_catalog_rows.provider_key
                    and snapshots.model_name = changed_catalog_rows.model_key
                )
                or (
                    changed_catalog_rows.price_kind = 'price_rule'
                    and snapshots.catalog_provider_id = changed_catalog_rows.provider_key
                )
            )

),

selected_keys as (

    select billable_key from recently_ingested
    union
    select billable_key from repriced

),

ranked as (

    -- The same ranking as stg_usage__events, on the snapshots of the events in scope only.
    select
        snapshots.*,
        row_number() over (
            partition by snapshots.billable_key
            order by {{ latest_snapshot_first() }}
        ) as snapshot_rank
    from snapshots
    inner join selected_keys
        on snapshots.billable_key = selected_keys.billable_key

),

final as (

    select
        ranked.*,
        priced_events.usage_date as previous_usage_date,
        'incremental' as scope_mode
    from ranked
    left join priced_events
        on ranked.billable_key = priced_events.billable_key
    where ranked.snapshot_rank = 1

)

{% else %}
-- noqa: disable=LT02

usage_events as (

    select * from {{ ref('stg_usage__events') }}

),

final as (

    select
        *,
        cast(null as date) as previous_usage_date,
        'all' as scope_mode
    from usage_events

)

-- noqa: enable=LT02
{% endif %}

select * from final
