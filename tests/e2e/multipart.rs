//! Multipart uploads through aws-sdk-s3: the whole lifecycle, S3's validation errors, listings
//! with their markers, UploadPartCopy with a range, and reading one part back.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use md5::Digest as _;
use sluice_tests::Sluice;

use crate::support::{client, code, get_bytes, http_status, make_bucket};

const MIB: usize = 1024 * 1024;

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn completed(parts: &[(i32, &str)]) -> CompletedMultipartUpload {
    CompletedMultipartUpload::builder()
        .set_parts(Some(
            parts
                .iter()
                .map(|(n, e)| CompletedPart::builder().part_number(*n).e_tag(*e).build())
                .collect(),
        ))
        .build()
}

#[tokio::test(flavor = "multi_thread")]
async fn multipart_lifecycle_and_validation() {
    let s = Sluice::start();
    let c = client(&s);
    let b = make_bucket(&c, "mpu").await;
    let created = c
        .create_multipart_upload()
        .bucket(&b)
        .key("big")
        .content_type("application/x-test")
        .metadata("origin", "e2e")
        .send()
        .await
        .unwrap();
    let id = created.upload_id().unwrap().to_owned();
    let bodies = [data(5 * MIB, 1), data(5 * MIB, 2), data(1234, 3)];
    let mut etags = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        let out = c
            .upload_part()
            .bucket(&b)
            .key("big")
            .upload_id(&id)
            .part_number(i as i32 + 1)
            .body(ByteStream::from(body.clone()))
            .send()
            .await
            .unwrap();
        etags.push(out.e_tag().unwrap().to_owned());
    }
    // ListParts with pagination.
    let page = c
        .list_parts()
        .bucket(&b)
        .key("big")
        .upload_id(&id)
        .max_parts(2)
        .send()
        .await
        .unwrap();
    assert_eq!(page.parts().len(), 2);
    assert_eq!(page.is_truncated(), Some(true));
    let rest = c
        .list_parts()
        .bucket(&b)
        .key("big")
        .upload_id(&id)
        .part_number_marker(page.next_part_number_marker().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        rest.parts()
            .iter()
            .map(|p| p.part_number().unwrap())
            .collect::<Vec<_>>(),
        [3]
    );
    assert_eq!(rest.parts()[0].size(), Some(1234));

    // The upload is listed.
    let uploads = c.list_multipart_uploads().bucket(&b).send().await.unwrap();
    assert_eq!(
        uploads
            .uploads()
            .iter()
            .map(|u| u.upload_id().unwrap())
            .collect::<Vec<_>>(),
        [id.as_str()]
    );

    // S3's validation.
    let bad = [
        (
            completed(&[(2, &etags[1]), (1, &etags[0])]),
            "InvalidPartOrder",
        ),
        (completed(&[(1, &etags[0]), (2, "\"0000\"")]), "InvalidPart"),
        (completed(&[(1, &etags[0]), (4, &etags[1])]), "InvalidPart"),
        (completed(&[(3, &etags[2]), (4, &etags[2])]), "InvalidPart"),
    ];
    for (list, want) in bad {
        let err = c
            .complete_multipart_upload()
            .bucket(&b)
            .key("big")
            .upload_id(&id)
            .multipart_upload(list)
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&err), want);
    }
    // A small part that is not the last: EntityTooSmall (upload a tiny part 4 and put it in the middle).
    let tiny = c
        .upload_part()
        .bucket(&b)
        .key("big")
        .upload_id(&id)
        .part_number(4)
        .body(ByteStream::from_static(b"tiny"))
        .send()
        .await
        .unwrap();
    let err = c
        .complete_multipart_upload()
        .bucket(&b)
        .key("big")
        .upload_id(&id)
        .multipart_upload(completed(&[
            (1, &etags[0]),
            (4, tiny.e_tag().unwrap()),
            (5, &etags[1]),
        ]))
        .send()
        .await
        .unwrap_err();
    assert!(
        ["EntityTooSmall", "InvalidPart"].contains(&code(&err).as_str()),
        "{}",
        code(&err)
    );
    let err = c
        .complete_multipart_upload()
        .bucket(&b)
        .key("big")
        .upload_id(&id)
        .multipart_upload(completed(&[(3, &etags[2]), (4, tiny.e_tag().unwrap())]))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "EntityTooSmall");

    let done = c
        .complete_multipart_upload()
        .bucket(&b)
        .key("big")
        .upload_id(&id)
        .multipart_upload(completed(&[(1, &etags[0]), (2, &etags[1]), (3, &etags[2])]))
        .send()
        .await
        .unwrap();
    let mut md5s = Vec::new();
    for body in &bodies {
        md5s.extend_from_slice(&md5::Md5::digest(body));
    }
    let want_etag = format!("\"{}-3\"", hex::encode(md5::Md5::digest(&md5s)));
    assert_eq!(done.e_tag(), Some(want_etag.as_str()));
    let head = c.head_object().bucket(&b).key("big").send().await.unwrap();
    assert_eq!(head.content_length(), Some((10 * MIB + 1234) as i64));
    assert_eq!(head.content_type(), Some("application/x-test"));
    assert_eq!(
        head.metadata().unwrap().get("origin").map(String::as_str),
        Some("e2e")
    );
    assert_eq!(head.e_tag(), Some(want_etag.as_str()));
    let whole: Vec<u8> = bodies.concat();
    assert_eq!(get_bytes(&c, &b, "big").await, whole);

    // One part back, and a range across a part boundary.
    let part2 = c
        .get_object()
        .bucket(&b)
        .key("big")
        .part_number(2)
        .send()
        .await
        .unwrap();
    assert_eq!(part2.parts_count(), Some(3));
    assert_eq!(part2.content_length(), Some((5 * MIB) as i64));
    assert_eq!(
        part2.body.collect().await.unwrap().into_bytes().as_ref(),
        bodies[1].as_slice()
    );
    let head3 = c
        .head_object()
        .bucket(&b)
        .key("big")
        .part_number(3)
        .send()
        .await
        .unwrap();
    assert_eq!(head3.content_length(), Some(1234));
    let err = c
        .get_object()
        .bucket(&b)
        .key("big")
        .part_number(4)
        .send()
        .await
        .unwrap_err();
    assert_eq!(http_status(&err), 416);
    let across = c
        .get_object()
        .bucket(&b)
        .key("big")
        .range(format!("bytes={}-{}", 5 * MIB - 2, 5 * MIB + 1))
        .send()
        .await
        .unwrap();
    assert_eq!(
        across.body.collect().await.unwrap().into_bytes().as_ref(),
        &whole[5 * MIB - 2..5 * MIB + 2]
    );

    // The upload is gone; its id no longer works.
    let err = c
        .list_parts()
        .bucket(&b)
        .key("big")
        .upload_id(&id)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "NoSuchUpload");
    assert!(
        c.list_multipart_uploads()
            .bucket(&b)
            .send()
            .await
            .unwrap()
            .uploads()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn abort_listing_markers_and_part_copy() {
    let s = Sluice::start();
    let c = client(&s);
    let b = make_bucket(&c, "mpu2").await;
    let mut ids = Vec::new();
    for key in ["a", "b", "b", "c"] {
        let out = c
            .create_multipart_upload()
            .bucket(&b)
            .key(key)
            .send()
            .await
            .unwrap();
        ids.push(out.upload_id().unwrap().to_owned());
    }
    // Pages of one, following NextKeyMarker / NextUploadIdMarker.
    let mut seen = Vec::new();
    let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
    loop {
        let page = c
            .list_multipart_uploads()
            .bucket(&b)
            .max_uploads(1)
            .set_key_marker(key_marker.clone())
            .set_upload_id_marker(id_marker.clone())
            .send()
            .await
            .unwrap();
        seen.extend(page.uploads().iter().map(|u| {
            (
                u.key().unwrap().to_owned(),
                u.upload_id().unwrap().to_owned(),
            )
        }));
        if page.is_truncated() != Some(true) {
            break;
        }
        key_marker = page.next_key_marker().map(str::to_owned);
        id_marker = page.next_upload_id_marker().map(str::to_owned);
        assert!(seen.len() <= 4, "pagination does not end");
    }
    let want: Vec<(String, String)> = ["a", "b", "b", "c"]
        .iter()
        .zip(&ids)
        .map(|(k, i)| (k.to_string(), i.clone()))
        .collect();
    assert_eq!(seen, want);

    c.abort_multipart_upload()
        .bucket(&b)
        .key("a")
        .upload_id(&ids[0])
        .send()
        .await
        .unwrap();
    let err = c
        .abort_multipart_upload()
        .bucket(&b)
        .key("a")
        .upload_id(&ids[0])
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "NoSuchUpload");
    // The error code of an UploadPart that must fail.
    let refused_part = async |key: &str, id: &str, number: i32| {
        let err = c
            .upload_part()
            .bucket(&b)
            .key(key)
            .upload_id(id)
            .part_number(number)
            .body(ByteStream::from_static(b"x"))
            .send()
            .await
            .unwrap_err();
        code(&err)
    };
    assert_eq!(refused_part("a", &ids[0], 1).await, "NoSuchUpload");
    assert_eq!(refused_part("c", &ids[3], 10001).await, "InvalidArgument");

    // UploadPartCopy: a 6 MiB source, copied as a ranged part plus a whole-object part.
    let source = data(6 * MIB, 9);
    c.put_object()
        .bucket(&b)
        .key("src")
        .body(ByteStream::from(source.clone()))
        .send()
        .await
        .unwrap();
    let first = c
        .upload_part_copy()
        .bucket(&b)
        .key("c")
        .upload_id(&ids[3])
        .part_number(1)
        .copy_source(format!("{b}/src"))
        .copy_source_range(format!("bytes=0-{}", 5 * MIB - 1))
        .send()
        .await
        .unwrap();
    let second = c
        .upload_part_copy()
        .bucket(&b)
        .key("c")
        .upload_id(&ids[3])
        .part_number(2)
        .copy_source(format!("{b}/src"))
        .send()
        .await
        .unwrap();
    let err = c
        .upload_part_copy()
        .bucket(&b)
        .key("c")
        .upload_id(&ids[3])
        .part_number(3)
        .copy_source(format!("{b}/src"))
        .copy_source_range(format!("bytes=0-{}", 6 * MIB))
        .send()
        .await
        .unwrap_err();
    assert_eq!(http_status(&err), 416);
    let e1 = first
        .copy_part_result()
        .unwrap()
        .e_tag()
        .unwrap()
        .to_owned();
    let e2 = second
        .copy_part_result()
        .unwrap()
        .e_tag()
        .unwrap()
        .to_owned();
    c.complete_multipart_upload()
        .bucket(&b)
        .key("c")
        .upload_id(&ids[3])
        .multipart_upload(completed(&[(1, &e1), (2, &e2)]))
        .send()
        .await
        .unwrap();
    let mut want = source[..5 * MIB].to_vec();
    want.extend_from_slice(&source);
    assert_eq!(get_bytes(&c, &b, "c").await, want);
}
