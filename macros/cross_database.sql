{#
    Adapter differences live here, each behind one dispatched macro, so models read the same on
    every warehouse.
#}

{# Read a top-level key of a JSON object stored as text, as text (null when absent). #}
{% macro json_text(column, key) -%}
    {{ return(adapter.dispatch('json_text', 'usage_warehouse')(column, key)) }}
{%- endmacro %}

{% macro default__json_text(column, key) -%}
    ({{ column }}::jsonb ->> '{{ key }}')
{%- endmacro %}

{% macro duckdb__json_text(column, key) -%}
    json_extract_string({{ column }}, '$.{{ key }}')
{%- endmacro %}

{% macro spark__json_text(column, key) -%}
    get_json_object({{ column }}, '$.{{ key }}')
{%- endmacro %}

{# Read a top-level key of a JSON object stored as text, as a whole number (null when absent). #}
{% macro json_bigint(column, key) -%}
    cast({{ json_text(column, key) }} as bigint)
{%- endmacro %}

{# An exact amount of US dollars: every cost column has this type on every warehouse. #}
{% macro usd(expression) -%}
    cast({{ expression }} as decimal(38, 12))
{%- endmacro %}

{#
    One over a price's `per` count (per million tokens, per thousand requests), as an exact
    decimal. A `per` that is not a power of ten (per hour of audio) yields null, so such a price
    leaves the event unpriced instead of rounding it.
#}
{% macro per_unit_factor(per_column) -%}
    case {{ per_column }}
        when 1 then cast(1 as decimal(18, 6))
        when 1000 then cast(0.001 as decimal(18, 6))
        when 1000000 then cast(0.000001 as decimal(18, 6))
    end
{%- endmacro %}

{# Seconds since UTC midnight of a timestamp stored in UTC. #}
{% macro seconds_since_midnight(timestamp_column) -%}
    (
        extract(hour from {{ timestamp_column }}) * 3600
        + extract(minute from {{ timestamp_column }}) * 60
        + floor(extract(second from {{ timestamp_column }}))
    )
{%- endmacro %}
