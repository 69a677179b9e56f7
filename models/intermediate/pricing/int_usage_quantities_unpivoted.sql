{# grain: one row per billable event and genai-prices usage key with a known quantity #}

with

events as (

    select * from {{ ref('int_usage_events_in_scope') }}

),

canonical_counts as (

    -- The canonical columns under genai-prices' usage keys: cached input is its
    -- cache_read_tokens and reasoning its output_reasoning_tokens.
    {% set canonical = {
        "input_tokens": "input_tokens",
        "cache_read_tokens": "cached_input_tokens",
        "cache_write_tokens": "cache_write_tokens",
        "output_tokens": "output_tokens",
        "output_reasoning_tokens": "reasoning_tokens",
    } %}
    {% for usage_key, column in canonical.items() %}
        select
            event_id,
            '{{ usage_key }}' as usage_key,
            {{ column }} as quantity
        from events
        where input_tokens is not null
        {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

detail_counts as (

    {% for usage_key in priced_usage_detail_keys() %}
        select
            event_id,
            '{{ usage_key }}' as usage_key,
            {{ json_bigint('usage_details', usage_key) }} as quantity
        from events
        where usage_details is not null
        {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

request_counts as (

    -- Prices per request count each event once.
    select
        event_id,
        'requests' as usage_key,
        1 as quantity
    from events
    where input_tokens is not null

),

unioned as (

    select
        event_id,
        usage_key,
        cast(quantity as bigint) as quantity
    from canonical_counts
    union all
    select
        event_id,
        usage_key,
        cast(quantity as bigint) as quantity
    from detail_counts
    union all
    select
        event_id,
        usage_key,
        cast(quantity as bigint) as quantity
    from request_counts

),

known as (

    select * from unioned
    where quantity is not null

)

select * from known
