{#
    grain: one row per row of the price seeds, with what it can re-price

    A row's hash changes whenever any of its values does. Comparing these rows with the ones the
    marts were last built with (int_price_catalog_applied) tells an incremental build which
    events a catalog change affects: the events of the row's provider and model whose created_at
    falls inside the row's effective window. A leaf-term row affects every event.
#}

with

token_prices as (

    select * from {{ ref('genai_token_prices') }}

),

leaf_terms as (

    select * from {{ ref('genai_price_leaf_terms') }}

),

unit_prices as (

    select * from {{ ref('unit_prices') }}

),

price_rules as (

    select * from {{ ref('price_rules') }}

),

catalog_rows as (

    select
        'token_price' as price_kind,
        price_provider_id as provider_key,
        catalog_model_id as model_key,
        effective_from,
        effective_to,
        {{ grain_key([
            "price_line_id", "price_version_id", "price_provider_id", "catalog_model_id", "service_tier",
            "effective_from", "effective_to", "day_second_from", "day_second_to", "usage_key", "price_key",
            "per_units", "above_input_tokens", "unit_price", "price_key_set"
        ]) }} as row_hash
    from token_prices

    union all

    select
        'leaf_term' as price_kind,
        null as provider_key,
        null as model_key,
        cast('1970-01-01 00:00:00' as timestamp) as effective_from,
        cast('9999-12-31 00:00:00' as timestamp) as effective_to,
        {{ grain_key(["price_key_set", "usage_key", "counted_usage_key", "coefficient"]) }} as row_hash
    from leaf_terms

    union all

    select
        'unit_price' as price_kind,
        provider as provider_key,
        model_name as model_key,
        effective_from,
        effective_to,
        {{ grain_key([
            "provider", "model_name", "unit_type", "audio", "is_default_variant", "effective_from",
            "effective_to", "unit_price_usd"
        ]) }} as row_hash
    from unit_prices

    union all

    select
        'price_rule' as price_kind,
        provider as provider_key,
        null as model_key,
        effective_from,
        effective_to,
        {{ grain_key(["provider", "service_tier", "price_multiplier", "effective_from", "effective_to"]) }}
            as row_hash
    from price_rules

)

select * from catalog_rows
