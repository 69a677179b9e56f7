{#
    The UTC days whose rows of fct_usage_daily this build replaces: the days that the events in
    this build's scope are on now, and the days they were on in the previous build.
#}
{% macro affected_usage_days() -%}
    select cast(created_at as date) as usage_date from {{ ref('int_usage_events_in_scope') }}
    union
    select previous_usage_date from {{ ref('int_usage_events_in_scope') }}
    where previous_usage_date is not null
{%- endmacro %}
