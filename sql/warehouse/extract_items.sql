-- PostgreSQL -> dim_item: every item ever in the catalogue, on sale or not.
SELECT i.item_id, i.name AS item_name, i.manufacturer_id, m.name AS manufacturer_name, i.cost, i.weight_kg,
       i.discontinued_at IS NULL AS on_sale, i.discontinued_at
FROM sales.items i
JOIN sales.manufacturers m USING (manufacturer_id)
